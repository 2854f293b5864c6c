import { describe, expect, it } from "vitest";
import { formatDuration, parseDuration } from "../../src/core/duration.js";

describe("parseDuration", () => {
  it.each([
    ["500", 500],
    ["500ms", 500],
    ["30s", 30_000],
    ["1.5s", 1_500],
    ["10m", 600_000],
    ["1h30m", 5_400_000],
    ["2d", 172_800_000],
  ])("%s is %d ms", (text, ms) => {
    expect(parseDuration(text)).toBe(ms);
  });

  it.each(["", "abc", "10x", "-5s", "5 s", "s"])("rejects %j", (text) => {
    expect(parseDuration(text)).toBeNull();
  });
});

describe("formatDuration", () => {
  it("is short and readable", () => {
    expect(formatDuration(950)).toBe("950ms");
    expect(formatDuration(12_340)).toBe("12.3s");
    expect(formatDuration(245_000)).toBe("4m05s");
    expect(formatDuration(7_800_000)).toBe("2h10m");
  });
});
