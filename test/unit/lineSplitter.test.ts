import { describe, expect, it } from "vitest";
import { LineSplitter, MAX_LINE_CHARS } from "../../src/worker/lineSplitter.js";

function split(chunks: Array<string | Buffer>): string[] {
  const lines: string[] = [];
  const splitter = new LineSplitter((line) => lines.push(line));
  for (const chunk of chunks)
    splitter.write(typeof chunk === "string" ? Buffer.from(chunk) : chunk);
  splitter.end();
  return lines;
}

describe("LineSplitter", () => {
  it("splits lines across chunks and keeps a last line without newline", () => {
    expect(split(["a\nb", "c\n\nd"])).toEqual(["a", "bc", "", "d"]);
  });

  it("keeps lines exactly as written", () => {
    expect(split(["dos\r\n  indented \n"])).toEqual(["dos\r", "  indented "]);
  });

  it("decodes a multi-byte character split between chunks", () => {
    const bytes = Buffer.from("é\n");
    expect(split([bytes.subarray(0, 1), bytes.subarray(1)])).toEqual(["é"]);
  });

  it("cuts an over-long line into pieces without losing any of it", () => {
    const long = "x".repeat(MAX_LINE_CHARS * 2 + 10);
    const lines = split([long, "\n"]);
    expect(lines.map((l) => l.length)).toEqual([MAX_LINE_CHARS, MAX_LINE_CHARS, 10]);
    expect(lines.join("")).toBe(long);
  });
});
