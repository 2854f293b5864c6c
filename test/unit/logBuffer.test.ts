import { afterEach, beforeEach, describe, expect, it, vi } from "vitest";
import { type OutputLine, plainLine } from "../../src/core/logEvent.js";
import { LeaseLost, LogBuffer } from "../../src/worker/logBuffer.js";

const line = (n: number): OutputLine => plainLine("stdout", String(n), n);

function setup(write: (lines: OutputLine[]) => Promise<void>, overrides = {}) {
  const pressure: boolean[] = [];
  const buffer = new LogBuffer({
    flushIntervalMs: 1_000,
    flushMaxEvents: 3,
    maxBufferedEvents: 10,
    write,
    onPressure: (full) => pressure.push(full),
    onLeaseLost: () => {},
    onWriteError: () => {},
    ...overrides,
  });
  return { buffer, pressure };
}

describe("LogBuffer", () => {
  beforeEach(() => {
    vi.useFakeTimers();
  });
  afterEach(() => {
    vi.useRealTimers();
  });

  it("writes after the interval when few lines wait", async () => {
    const written: OutputLine[][] = [];
    const { buffer } = setup(async (lines) => {
      written.push(lines);
    });
    buffer.push(line(1));
    await vi.advanceTimersByTimeAsync(999);
    expect(written).toEqual([]);
    await vi.advanceTimersByTimeAsync(1);
    expect(written).toEqual([[line(1)]]);
  });

  it("writes at once when flushMaxEvents lines wait", async () => {
    const written: OutputLine[][] = [];
    const { buffer } = setup(async (lines) => {
      written.push(lines);
    });
    for (let i = 1; i <= 3; i++) buffer.push(line(i));
    await vi.advanceTimersByTimeAsync(0);
    expect(written).toEqual([[line(1), line(2), line(3)]]);
  });

  it("asks for backpressure when full and releases it once drained, losing nothing", async () => {
    let release: () => void = () => {};
    const written: OutputLine[] = [];
    const { buffer, pressure } = setup(
      (lines) =>
        new Promise<void>((resolve) => {
          release = () => {
            written.push(...lines);
            resolve();
          };
        }),
    );
    for (let i = 1; i <= 10; i++) buffer.push(line(i));
    expect(pressure).toEqual([true]);
    while (buffer.size > 0) {
      release();
      await vi.advanceTimersByTimeAsync(1_000);
    }
    expect(pressure).toEqual([true, false]);
    expect(written.map((l) => l.line)).toEqual(["1", "2", "3", "4", "5", "6", "7", "8", "9", "10"]);
  });

  it("retries a failed write with the same lines, in order", async () => {
    const attempts: string[][] = [];
    let fail = 2;
    const { buffer } = setup(async (lines) => {
      attempts.push(lines.map((l) => l.line));
      if (fail-- > 0) throw new Error("store down");
    });
    buffer.push(line(1));
    buffer.push(line(2));
    const drained = buffer.drain();
    await vi.advanceTimersByTimeAsync(1_000);
    await drained;
    expect(attempts).toEqual([
      ["1", "2"],
      ["1", "2"],
      ["1", "2"],
    ]);
  });

  it("stops for good when the lease is lost", async () => {
    const { buffer } = setup(async () => {
      throw new LeaseLost();
    });
    buffer.push(line(1));
    await expect(buffer.drain()).rejects.toBeInstanceOf(LeaseLost);
    buffer.push(line(2));
    expect(buffer.size).toBe(0);
  });
});
