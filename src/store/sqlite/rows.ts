import type { Attempt, Failure, FailureReason, Job, JobKind, JobState } from "../../core/job.js";

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
    env: spec.env,
    cwd: spec.cwd,
    labels: JSON.parse(row.labels) as Record<string, string>,
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
