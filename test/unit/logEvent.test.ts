import { describe, expect, it } from "vitest";
import { parseOutputLine } from "../../src/core/logEvent.js";

const parse = (line: string) =>
  parseOutputLine("stdout", line, 1).map(({ stream, kind, data, line: text }) => ({
    stream,
    kind,
    data,
    line: text,
  }));

describe("parseOutputLine", () => {
  it("keeps plain lines, including ones that merely start with colons", () => {
    expect(parse("hello")).toEqual([{ stream: "stdout", kind: "line", data: null, line: "hello" }]);
    expect(parse("::other 1")[0]?.kind).toBe("line");
    expect(parse(" ::progress 5")[0]?.kind).toBe("line");
  });

  it("reads progress from 0 to 100 on a line of its own", () => {
    expect(parse("::progress 40")).toEqual([
      { stream: "stdout", kind: "progress", data: { percent: 40 }, line: "::progress 40" },
    ]);
    expect(parse("::progress 12.5 ")[0]?.data).toEqual({ percent: 12.5 });
  });

  it("keeps a malformed progress line and warns about it", () => {
    const events = parse("::progress 140");
    expect(events.map((e) => e.kind)).toEqual(["line", "warning"]);
    expect(events[1]?.stream).toBe("system");
    expect(events[1]?.line).toMatch(/0 to 100, got "140"/);
  });

  it("reads structured events, and keeps invalid JSON as a line with a warning", () => {
    expect(parse('::event {"step":"upload","files":3}')[0]).toEqual({
      stream: "stdout",
      kind: "event",
      data: { step: "upload", files: 3 },
      line: '::event {"step":"upload","files":3}',
    });
    const bad = parse("::event {oops");
    expect(bad.map((e) => [e.kind, e.stream])).toEqual([
      ["line", "stdout"],
      ["warning", "system"],
    ]);
    expect(bad[0]?.line).toBe("::event {oops");
    expect(bad[1]?.line).toMatch(/not followed by valid JSON/);
  });
});
