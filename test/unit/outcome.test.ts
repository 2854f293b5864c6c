import { describe, expect, it } from "vitest";
import type { Failure } from "../../src/core/job.js";
import { type AttemptOutcome, decideNextState, workerLostOutcome } from "../../src/core/outcome.js";
import { backoffDelay } from "../../src/core/retry.js";

const backoff = { baseMs: 1_000, maxMs: 300_000 };
const failed = (reason: Failure["reason"]): AttemptOutcome => ({
  state: "failed",
  exitCode: 1,
  signal: null,
  failure: { reason, message: reason },
});

describe("decideNextState", () => {
  const facts = { attemptsUsed: 1, maxAttempts: 3, backoff, cancelRequested: false };

  it("records a success", () => {
    const next = decideNextState(facts, { state: "succeeded", exitCode: 0, signal: null }, 0, 0.5);
    expect(next).toEqual({ state: "succeeded", failure: null, runAt: null });
  });

  it("retries a retryable failure with attempts left, after its backoff", () => {
    const next = decideNextState(facts, failed("exit_code"), 10_000, 0.5);
    expect(next.state).toBe("pending");
    expect(next.runAt).toBe(11_000);
    expect(next.failure?.reason).toBe("exit_code");
  });

  it("fails once the attempts are used up", () => {
    const next = decideNextState({ ...facts, attemptsUsed: 3 }, failed("exit_code"), 0, 0.5);
    expect(next.state).toBe("failed");
  });

  it("never retries a cancel, a spawn error or an invalid job", () => {
    for (const reason of ["cancelled", "spawn_error", "invalid_job"] as const) {
      expect(decideNextState(facts, failed(reason), 0, 0.5).state).toBe("failed");
    }
  });

  it("lets a requested cancel win over a failure, but not over a success", () => {
    const cancelling = { ...facts, cancelRequested: true };
    expect(decideNextState(cancelling, failed("exit_code"), 0, 0.5).state).toBe("cancelled");
    const success: AttemptOutcome = { state: "succeeded", exitCode: 0, signal: null };
    expect(decideNextState(cancelling, success, 0, 0.5).state).toBe("succeeded");
  });

  it("names the worker and the time in a worker_lost failure", () => {
    const outcome = workerLostOutcome("w1", Date.parse("2026-01-01T00:00:00Z"));
    expect(outcome.state).toBe("failed");
    if (outcome.state === "failed") {
      expect(outcome.failure.reason).toBe("worker_lost");
      expect(outcome.failure.message).toContain("w1");
      expect(outcome.failure.message).toContain("2026-01-01T00:00:00.000Z");
    }
  });
});

describe("backoffDelay", () => {
  it("doubles from the base and stays within ±20 %", () => {
    expect(backoffDelay(1, backoff, 0.5)).toBe(1_000);
    expect(backoffDelay(2, backoff, 0.5)).toBe(2_000);
    expect(backoffDelay(3, backoff, 0.5)).toBe(4_000);
    expect(backoffDelay(1, backoff, 0)).toBe(800);
    expect(backoffDelay(1, backoff, 0.999_999)).toBe(1_200);
  });

  it("is capped", () => {
    expect(backoffDelay(30, backoff, 0.5)).toBe(300_000);
  });
});
