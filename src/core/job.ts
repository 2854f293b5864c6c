/**
 * The job model: what a user submits, and what Baton records about it.
 * Times are epoch milliseconds inside Baton; the HTTP API renders them as ISO 8601.
 */

export const JOB_STATES = [
  "pending",
  "blocked",
  "running",
  "succeeded",
  "failed",
  "cancelled",
  "skipped",
] as const;
export type JobState = (typeof JOB_STATES)[number];

export const JOB_KINDS = ["shell", "handler"] as const;
export type JobKind = (typeof JOB_KINDS)[number];

/** Why an attempt or a job did not succeed. Stable strings: users and scripts match on them. */
export const FAILURE_REASONS = [
  "exit_code",
  "timeout",
  "cancelled",
  "worker_lost",
  "lease_lost",
  "heartbeat_failed",
  "handler_error",
  "invalid_job",
  "spawn_error",
  "shutdown",
] as const;
export type FailureReason = (typeof FAILURE_REASONS)[number];

export interface Failure {
  reason: FailureReason;
  message: string;
}

export interface Resources {
  /** CPUs the job needs from the worker's free capacity (fractions allowed). */
  cpus: number;
  /** Memory in MiB, or null when the job does not say. */
  memoryMb: number | null;
}

export interface Backoff {
  /** Delay before the first retry; doubled for each further one. */
  baseMs: number;
  /** Cap on any single delay. */
  maxMs: number;
}

/** A job as submitted, with every default applied. */
export interface JobSpec {
  queue: string;
  kind: JobKind;
  /** argv of a shell job (no shell involved), or null. */
  command: string[] | null;
  /** Script text run by /bin/sh, or null. */
  script: string | null;
  handler: string | null;
  payload: unknown;
  priority: number;
  resources: Resources;
  timeoutMs: number | null;
  maxAttempts: number;
  backoff: Backoff;
  runAt: number;
  idempotencyKey: string | null;
  /** Jobs sharing a key run at most `concurrencyLimit` at a time, across all workers. */
  concurrencyKey: string | null;
  concurrencyLimit: number;
  env: Record<string, string>;
  cwd: string | null;
  labels: Record<string, string>;
  /** Bytes of output stored for the job; what comes after is counted, not stored. */
  maxLogBytes: number;
}

/** How long a finished job keeps its idempotency key by default: a day. */
export const DEFAULT_IDEMPOTENCY_RETENTION_MS = 86_400_000;

/** Whether a job that finished at `finishedAt` has let go of its idempotency key. */
export function idempotencyKeyExpired(
  finishedAt: number | null,
  now: number,
  retentionMs: number,
): boolean {
  return finishedAt !== null && finishedAt < now - retentionMs;
}

/** Default cap on a job's stored output. */
export const DEFAULT_MAX_LOG_BYTES = 64 * 1024 * 1024;

/** How much of a job's output is stored, and how much went over its cap. */
export interface OutputStats {
  storedBytes: number;
  droppedLines: number;
  droppedBytes: number;
}

/** An operator put the failed job back in line (`retry`, `dlq replay`) after an attempt. */
export interface Replay {
  at: number;
  /** The attempt whose failure was replayed; the next attempt is the replay. */
  afterAttempt: number;
  failure: Failure | null;
}

/** One claim of a job by a worker. */
export interface Attempt {
  attempt: number;
  /** Set on the first attempt after a replay: the attempt whose failure it replays. */
  replayOf: number | null;
  workerId: string;
  startedAt: number;
  finishedAt: number | null;
  exitCode: number | null;
  signal: string | null;
  failure: Failure | null;
}

export interface Job extends JobSpec {
  id: string;
  state: JobState;
  /** Number of the latest claim (0 before the first): the fencing token. */
  attempt: number;
  /** Claims that count against maxAttempts (a shutdown release does not). */
  attemptsUsed: number;
  workerId: string | null;
  createdAt: number;
  startedAt: number | null;
  finishedAt: number | null;
  exitCode: number | null;
  signal: string | null;
  result: unknown;
  failure: Failure | null;
  cancelRequested: boolean;
  /** The latest `::progress` the job reported (0–100), or null. */
  progress: number | null;
  output: OutputStats;
  /** Each time the job was put back in line after failing, oldest first. */
  replays: Replay[];
  workflowId: string | null;
  step: string | null;
}

export const DEFAULT_QUEUE = "default";
export const DEFAULT_PRIORITY = 5;
export const MIN_PRIORITY = 1;
export const MAX_PRIORITY = 10;

/** A job with the history of its claims, as `GET /v1/jobs/:id` shows it. */
export interface JobDetail extends Job {
  attempts: Attempt[];
}
