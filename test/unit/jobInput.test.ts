import { describe, expect, it } from "vitest";
import { BatonError } from "../../src/core/errors.js";
import { normalizeJobInput } from "../../src/core/jobInput.js";

const fieldOf = (fn: () => unknown): string | undefined => {
  try {
    fn();
  } catch (error) {
    if (error instanceof BatonError) return error.errors[0]?.field;
    throw error;
  }
  return undefined;
};

describe("normalizeJobInput", () => {
  it("applies every default of a shell job", () => {
    const spec = normalizeJobInput({ command: ["echo", "hi"] }, 1_000);
    expect(spec).toMatchObject({
      queue: "default",
      kind: "shell",
      command: ["echo", "hi"],
      priority: 5,
      resources: { cpus: 1, memoryMb: null },
      maxAttempts: 1,
      backoff: { baseMs: 1_000, maxMs: 300_000 },
      runAt: 1_000,
      timeoutMs: null,
    });
  });

  it("turns a delay into a start time", () => {
    expect(normalizeJobInput({ command: ["true"], delayMs: 500 }, 1_000).runAt).toBe(1_500);
    const at = "2030-01-01T00:00:00.000Z";
    expect(normalizeJobInput({ command: ["true"], runAt: at }, 1_000).runAt).toBe(Date.parse(at));
  });

  it("names the field of each mistake", () => {
    expect(fieldOf(() => normalizeJobInput({}, 0))).toBe("command");
    expect(fieldOf(() => normalizeJobInput({ command: ["x"], script: "y" }, 0))).toBe("command");
    expect(fieldOf(() => normalizeJobInput({ command: [""] }, 0))).toBe("command");
    expect(fieldOf(() => normalizeJobInput({ script: "  " }, 0))).toBe("script");
    expect(fieldOf(() => normalizeJobInput({ command: ["x"], cwd: "rel" }, 0))).toBe("cwd");
    expect(
      fieldOf(() =>
        normalizeJobInput({ command: ["x"], runAt: "2030-01-01T00:00:00Z", delayMs: 1 }, 0),
      ),
    ).toBe("runAt");
    expect(
      fieldOf(() => normalizeJobInput({ command: ["x"], backoff: { baseMs: 10, maxMs: 5 } }, 0)),
    ).toBe("backoff.maxMs");
  });
});
