import type { Backoff, Failure, FailureReason, JobKind } from "./job.js";

/** Shell jobs run once by default: a half-run script is not re-run behind the user's back. */
export const DEFAULT_MAX_ATTEMPTS: Readonly<Record<JobKind, number>> = { shell: 1, handler: 3 };
export const DEFAULT_BACKOFF: Readonly<Backoff> = { baseMs: 1_000, maxMs: 5 * 60_000 };
const BACKOFF_FACTOR = 2;
const JITTER = 0.2;

/** Reasons where another attempt cannot turn out differently. */
const NON_RETRYABLE: ReadonlySet<FailureReason> = new Set([
  "cancelled",
  "invalid_job",
  "spawn_error",
]);

export function isRetryable(failure: Failure): boolean {
  return !NON_RETRYABLE.has(failure.reason);
}

/**
 * Delay before the retry that follows failed attempt number `attemptsUsed` (1-based):
 * base * 2^(n-1), capped, then ±20 % jitter so that a crowd of failures does not retry in step.
 * `random` is injected (a value in [0, 1)) so that tests are deterministic.
 */
export function backoffDelay(attemptsUsed: number, backoff: Backoff, random: number): number {
  const exponent = Math.max(0, attemptsUsed - 1);
  const raw = Math.min(backoff.maxMs, backoff.baseMs * BACKOFF_FACTOR ** exponent);
  const jitter = 1 + JITTER * (2 * random - 1);
  return Math.max(0, Math.round(raw * jitter));
}
