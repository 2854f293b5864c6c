import { describe, expect, it } from "vitest";
import { LineSplitter, MAX_LINE_BYTES } from "../../src/worker/lineSplitter.js";

function split(chunks: Array<string | Buffer>, start = 0): Array<[string, number]> {
  const lines: Array<[string, number]> = [];
  const splitter = new LineSplitter((line, end) => lines.push([line, end]), start);
  for (const chunk of chunks)
    splitter.write(typeof chunk === "string" ? Buffer.from(chunk) : chunk);
  splitter.end();
  return lines;
}

function cuts(chunks: string[]): boolean[] {
  const marks: boolean[] = [];
  const splitter = new LineSplitter((_line, _end, cut) => marks.push(cut));
  for (const chunk of chunks) splitter.write(Buffer.from(chunk));
  splitter.end();
  return marks;
}

const text = (lines: Array<[string, number]>) => lines.map(([line]) => line);

describe("LineSplitter", () => {
  it("splits lines across chunks and keeps a last line without newline", () => {
    expect(text(split(["a\nb", "c\n\nd"]))).toEqual(["a", "bc", "", "d"]);
  });

  it("reports with each line the stream offset just past it", () => {
    expect(split(["a\nb", "c\n\nd"], 100)).toEqual([
      ["a", 102],
      ["bc", 105],
      ["", 106],
      ["d", 107],
    ]);
  });

  it("keeps lines exactly as written", () => {
    expect(text(split(["dos\r\n  indented \n"]))).toEqual(["dos\r", "  indented "]);
  });

  it("decodes a multi-byte character split between chunks", () => {
    const bytes = Buffer.from("é\n");
    expect(text(split([bytes.subarray(0, 1), bytes.subarray(1)]))).toEqual(["é"]);
  });

  it("cuts an over-long line into pieces without losing any of it", () => {
    const long = "x".repeat(MAX_LINE_BYTES * 2 + 10);
    const lines = split([long.slice(0, 1000), long.slice(1000), "\n"]);
    expect(lines).toEqual([
      ["x".repeat(MAX_LINE_BYTES), MAX_LINE_BYTES],
      ["x".repeat(MAX_LINE_BYTES), 2 * MAX_LINE_BYTES],
      ["x".repeat(10), 2 * MAX_LINE_BYTES + 11],
    ]);
    expect(cuts([long, "\nshort\n"])).toEqual([true, true, false, false]);
  });

  it("cuts bytes that are not UTF-8 at the limit, not byte by byte", () => {
    const pieces = split([Buffer.alloc(200 * 1024, 0x80)]);
    expect(pieces).toHaveLength(4);
    expect(pieces.at(-1)?.[1]).toBe(200 * 1024);
  });

  it("never cuts inside a multi-byte character", () => {
    const long = `x${"€".repeat(MAX_LINE_BYTES)}`; // 3 bytes each: cuts fall mid-character
    const lines = text(split([long]));
    expect(lines.join("")).toBe(long);
    for (const line of lines) expect(line).not.toContain("\ufffd");
  });
});
