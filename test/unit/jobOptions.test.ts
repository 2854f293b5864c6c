import { describe, expect, it } from "vitest";
import { UsageError } from "../../src/cli/exit.js";
import { jobInputFrom } from "../../src/cli/jobOptions.js";

describe("job options", () => {
  it("turn --backoff and --backoff-max into the job's backoff", () => {
    expect(jobInputFrom(["true"], { backoff: 5_000, backoffMax: 60_000 }).backoff).toEqual({
      baseMs: 5_000,
      maxMs: 60_000,
    });
    expect(jobInputFrom(["true"], { backoffMax: 60_000 }).backoff).toEqual({ maxMs: 60_000 });
    expect(jobInputFrom(["true"], {}).backoff).toBeUndefined();
  });

  it("refuse contradictory timing", () => {
    expect(() => jobInputFrom(["true"], { delay: 1_000, at: "2030-01-01T00:00:00Z" })).toThrow(
      UsageError,
    );
  });
});
