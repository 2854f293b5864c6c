import type { Attempt, Failure, FailureReason, Job, JobKind, JobState } from "../core/job.js";
import {
  type EventKind,
  type LogEvent,
  type LogStream,
  NO_OUTPUT,
  type OutputOffsets,
} from "../core/logEvent.js";
import { type AttemptOutcome, decideNextState, type NextState } from "../core/outcome.js";
import type { HeldLease, QueueInfo } from "./store.js";

/** A row of `jobs` as better-sqlite3 returns it. */
export interface JobRow {
  id: number;
  queue: string;
  kind: string;
  spec: string;
  labels: string;
  priority: number;
  cpus: number;
  memory_mb: number | null;
  timeout_ms: number | null;
  max_attempts: number;
  backoff_base_ms: number;
  backoff_max_ms: number;
  run_at: number;
  idempotency_key: string | null;
  concurrency_key: string | null;
  concurrency_limit: number;
  state: string;
  attempt: number;
  attempts_used: number;
  worker_id: string | null;
  lease_expires_at: number | null;
  cancel_requested: number;
  created_at: number;
  started_at: number | null;
  finished_at: number | null;
  exit_code: number | null;
  signal: string | null;
  result: string | null;
  failure_reason: string | null;
  failure_message: string | null;
  log_seq: number;
  output_offsets: string | null;
  progress: number | null;
  max_log_bytes: number;
  log_bytes: number;
  log_dropped_lines: number;
  log_dropped_bytes: number;
  workflow_id: string | null;
  step: string | null;
}

export interface AttemptRow {
  attempt: number;
  worker_id: string;
  started_at: number;
  finished_at: number | null;
  exit_code: number | null;
  signal: string | null;
  failure_reason: string | null;
  failure_message: string | null;
}

/** The JSON kept in `jobs.spec`: what to run. */
export interface SpecColumn {
  command: string[] | null;
  script: string | null;
  handler: string | null;
  payload: unknown;
  env: Record<string, string>;
  cwd: string | null;
}

function failureOf(reason: string | null, message: string | null): Failure | null {
  return reason === null ? null : { reason: reason as FailureReason, message: message ?? "" };
}

export function jobFromRow(row: JobRow): Job {
  const spec = JSON.parse(row.spec) as SpecColumn;
  return {
    id: String(row.id),
    queue: row.queue,
    kind: row.kind as JobKind,
    command: spec.command,
    script: spec.script,
    handler: spec.handler,
    payload: spec.payload,
    priority: row.priority,
    resources: { cpus: row.cpus, memoryMb: row.memory_mb },
    timeoutMs: row.timeout_ms,
    maxAttempts: row.max_attempts,
    backoff: { baseMs: row.backoff_base_ms, maxMs: row.backoff_max_ms },
    runAt: row.run_at,
    idempotencyKey: row.idempotency_key,
    concurrencyKey: row.concurrency_key,
    concurrencyLimit: row.concurrency_limit,
    env: spec.env,
    cwd: spec.cwd,
    labels: JSON.parse(row.labels) as Record<string, string>,
    maxLogBytes: row.max_log_bytes,
    state: row.state as JobState,
    attempt: row.attempt,
    attemptsUsed: row.attempts_used,
    workerId: row.worker_id,
    createdAt: row.created_at,
    startedAt: row.started_at,
    finishedAt: row.finished_at,
    exitCode: row.exit_code,
    signal: row.signal,
    result: row.result === null ? null : JSON.parse(row.result),
    failure: failureOf(row.failure_reason, row.failure_message),
    cancelRequested: row.cancel_requested === 1,
    progress: row.progress,
    output: {
      storedBytes: row.log_bytes,
      droppedLines: row.log_dropped_lines,
      droppedBytes: row.log_dropped_bytes,
    },
    workflowId: row.workflow_id,
    step: row.step,
  };
}

export function attemptFromRow(row: AttemptRow): Attempt {
  return {
    attempt: row.attempt,
    workerId: row.worker_id,
    startedAt: row.started_at,
    finishedAt: row.finished_at,
    exitCode: row.exit_code,
    signal: row.signal,
    failure: failureOf(row.failure_reason, row.failure_message),
  };
}

/** A row of `job_logs` as the store reads it. */
export interface LogRow {
  seq: number;
  attempt: number;
  stream: string;
  line: string;
  ts: number;
  kind: string;
  data: string | null;
  cut: number;
}

export function logEventFromRow(row: LogRow): LogEvent {
  return {
    seq: row.seq,
    attempt: row.attempt,
    stream: row.stream as LogStream,
    line: row.line,
    ts: row.ts,
    kind: row.kind as EventKind,
    data: row.data === null ? null : (JSON.parse(row.data) as unknown),
    cut: row.cut === 1,
  };
}

/** A running attempt the worker holds, from its job row (adoption after a restart). */
export function heldLeaseFromRow(row: JobRow, workerId: string): HeldLease {
  const job = jobFromRow(row);
  return {
    job,
    lease: { jobId: job.id, attempt: row.attempt, workerId },
    expiresAt: row.lease_expires_at ?? 0,
    stored: row.output_offsets
      ? (JSON.parse(row.output_offsets) as OutputOffsets)
      : { ...NO_OUTPUT },
  };
}

/** What an attempt's outcome does to its job, decided from the job's row. */
export function nextStateOf(
  row: JobRow,
  outcome: AttemptOutcome,
  now: number,
  random: number,
): NextState {
  return decideNextState(
    {
      attemptsUsed: row.attempts_used,
      maxAttempts: row.max_attempts,
      backoff: { baseMs: row.backoff_base_ms, maxMs: row.backoff_max_ms },
      cancelRequested: row.cancel_requested === 1,
    },
    outcome,
    now,
    random,
  );
}

/** The result column of an outcome. */
export function resultColumn(outcome: AttemptOutcome): string | null {
  return outcome.state === "succeeded" && outcome.result !== undefined
    ? JSON.stringify(outcome.result)
    : null;
}

/** A queue as the stores read it (settings joined with counts). */
export interface QueueRow {
  name: string;
  paused: number;
  max_running: number | null;
  running: number;
  pending: number;
}

export function queueFromRow(row: QueueRow): QueueInfo {
  return {
    name: row.name,
    paused: row.paused === 1,
    maxRunning: row.max_running,
    running: Number(row.running),
    pending: Number(row.pending),
  };
}
