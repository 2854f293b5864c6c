import type { Backoff, Failure, JobState } from "./job.js";
import { backoffDelay, isRetryable } from "./retry.js";

/** What one attempt came to, as reported by the worker (or decided by the reaper). */
export type AttemptOutcome =
  | { state: "succeeded"; exitCode: number | null; signal: null; result?: unknown }
  | {
      state: "failed";
      exitCode: number | null;
      signal: string | null;
      failure: Failure;
      /** The handler said another attempt cannot help (`NonRetryableError`). */
      final?: boolean;
    }
  | { state: "cancelled"; exitCode: number | null; signal: string | null };

/** The job's facts that the decision depends on. */
export interface RetryFacts {
  attemptsUsed: number;
  maxAttempts: number;
  backoff: Backoff;
  cancelRequested: boolean;
}

export interface NextState {
  state: Extract<JobState, "succeeded" | "failed" | "cancelled" | "pending">;
  failure: Failure | null;
  /** Set when the job goes back to pending: when it may run again. */
  runAt: number | null;
}

export const CANCELLED: Failure = { reason: "cancelled", message: "cancelled by request" };

/**
 * The job's next state once an attempt has ended: success stands even if a cancel
 * arrived meanwhile; a requested cancel wins over a failure; a retryable failure with
 * attempts left goes back to pending after its backoff; anything else fails the job.
 */
export function decideNextState(
  facts: RetryFacts,
  outcome: AttemptOutcome,
  now: number,
  random: number,
): NextState {
  if (outcome.state === "succeeded") return { state: "succeeded", failure: null, runAt: null };
  if (outcome.state === "cancelled" || facts.cancelRequested) {
    return { state: "cancelled", failure: CANCELLED, runAt: null };
  }
  const failure = outcome.failure;
  if (isRetryable(failure) && outcome.final !== true && facts.attemptsUsed < facts.maxAttempts) {
    const delay = backoffDelay(facts.attemptsUsed, facts.backoff, random);
    return { state: "pending", failure, runAt: now + delay };
  }
  return { state: "failed", failure, runAt: null };
}

/** The outcome the reaper records for an attempt whose lease expired. */
export function workerLostOutcome(workerId: string | null, expiredAt: number): AttemptOutcome {
  const who = workerId ?? "unknown worker";
  return {
    state: "failed",
    exitCode: null,
    signal: null,
    failure: {
      reason: "worker_lost",
      message: `lease held by ${who} expired at ${new Date(expiredAt).toISOString()} without a heartbeat`,
    },
  };
}
