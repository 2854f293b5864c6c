import type {
  Attempt,
  Failure,
  FailureReason,
  Job,
  JobDetail,
  JobKind,
  JobSpec,
  JobState,
  Replay,
} from "../core/job.js";
import {
  type EventKind,
  type LogEvent,
  type LogStream,
  NO_OUTPUT,
  type OutputOffsets,
} from "../core/logEvent.js";
import { type AttemptOutcome, decideNextState, type NextState } from "../core/outcome.js";
import type { WorkerInfo, WorkerRuns, WorkerStatus } from "../core/pool.js";
import type { QueueCounts } from "../core/stats.js";
import type { HeldLease, QueueInfo } from "./store.js";

/** A row of `jobs` as better-sqlite3 returns it. */
export interface JobRow {
  id: number;
  queue: string;
  kind: string;
  spec: string;
  /** The handler a handler job names (also in `spec`): what claims filter on. */
  handler: string | null;
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
  replays: string | null;
  workflow_id: string | null;
  step: string | null;
}

/** Every column of a `JobRow`, checked complete by the compiler. */
const JOB_ROW_KEYS: Record<keyof JobRow, true> = {
  id: true,
  queue: true,
  kind: true,
  spec: true,
  handler: true,
  labels: true,
  priority: true,
  cpus: true,
  memory_mb: true,
  timeout_ms: true,
  max_attempts: true,
  backoff_base_ms: true,
  backoff_max_ms: true,
  run_at: true,
  idempotency_key: true,
  concurrency_key: true,
  concurrency_limit: true,
  state: true,
  attempt: true,
  attempts_used: true,
  worker_id: true,
  lease_expires_at: true,
  cancel_requested: true,
  created_at: true,
  started_at: true,
  finished_at: true,
  exit_code: true,
  signal: true,
  result: true,
  failure_reason: true,
  failure_message: true,
  log_seq: true,
  output_offsets: true,
  progress: true,
  max_log_bytes: true,
  log_bytes: true,
  log_dropped_lines: true,
  log_dropped_bytes: true,
  replays: true,
  workflow_id: true,
  step: true,
};
export const JOB_ROW_COLUMNS = Object.keys(JOB_ROW_KEYS) as ReadonlyArray<keyof JobRow>;

/** A row read raw (an array of values in the order of JOB_ROW_COLUMNS) as a `JobRow`. */
export function jobRowFromValues(values: readonly unknown[]): JobRow {
  const row: Record<string, unknown> = {};
  for (let i = 0; i < JOB_ROW_COLUMNS.length; i++) row[JOB_ROW_COLUMNS[i] as string] = values[i];
  return row as unknown as JobRow;
}

/** The columns a job is inserted with, in the order positional inserts bind them. */
export const NEW_JOB_COLUMNS = [
  "queue",
  "kind",
  "spec",
  "labels",
  "priority",
  "cpus",
  "memory_mb",
  "timeout_ms",
  "max_attempts",
  "backoff_base_ms",
  "backoff_max_ms",
  "run_at",
  "idempotency_key",
  "max_log_bytes",
  "concurrency_key",
  "concurrency_limit",
  "created_at",
  "handler",
] as const satisfies ReadonlyArray<keyof JobRow>;

/** A new job's values of `NEW_JOB_COLUMNS`; the table's defaults give the rest. */
export type NewJobColumns = Pick<JobRow, (typeof NEW_JOB_COLUMNS)[number]>;

export function newJobColumns(spec: JobSpec, createdAt: number): NewJobColumns {
  const specColumn: SpecColumn = {
    command: spec.command,
    script: spec.script,
    handler: spec.handler,
    payload: spec.payload,
    env: spec.env,
    cwd: spec.cwd,
  };
  return {
    queue: spec.queue,
    kind: spec.kind,
    spec: JSON.stringify(specColumn),
    labels: JSON.stringify(spec.labels),
    priority: spec.priority,
    cpus: spec.resources.cpus,
    memory_mb: spec.resources.memoryMb,
    timeout_ms: spec.timeoutMs,
    max_attempts: spec.maxAttempts,
    backoff_base_ms: spec.backoff.baseMs,
    backoff_max_ms: spec.backoff.maxMs,
    run_at: spec.runAt,
    idempotency_key: spec.idempotencyKey,
    max_log_bytes: spec.maxLogBytes,
    concurrency_key: spec.concurrencyKey,
    concurrency_limit: spec.concurrencyLimit,
    created_at: createdAt,
    handler: spec.handler,
  };
}

/**
 * A job just inserted from `spec` under `id`, as reading its row back gives it: it spares
 * parsing back the JSON just written (the stores' tests check that the two agree). The
 * payload is the spec's own, already JSON (the SDK and the API see to it).
 */
export function pendingJob(id: number, spec: JobSpec, createdAt: number): JobDetail {
  return {
    id: String(id),
    queue: spec.queue,
    kind: spec.kind,
    command: spec.command === null ? null : [...spec.command],
    script: spec.script,
    handler: spec.handler,
    payload: spec.payload,
    priority: spec.priority,
    resources: { cpus: spec.resources.cpus, memoryMb: spec.resources.memoryMb },
    timeoutMs: spec.timeoutMs,
    maxAttempts: spec.maxAttempts,
    backoff: { baseMs: spec.backoff.baseMs, maxMs: spec.backoff.maxMs },
    runAt: spec.runAt,
    idempotencyKey: spec.idempotencyKey,
    concurrencyKey: spec.concurrencyKey,
    concurrencyLimit: spec.concurrencyLimit,
    env: { ...spec.env },
    cwd: spec.cwd,
    labels: { ...spec.labels },
    maxLogBytes: spec.maxLogBytes,
    state: "pending",
    attempt: 0,
    attemptsUsed: 0,
    workerId: null,
    createdAt,
    startedAt: null,
    finishedAt: null,
    exitCode: null,
    signal: null,
    result: null,
    failure: null,
    cancelRequested: false,
    progress: null,
    output: { storedBytes: 0, droppedLines: 0, droppedBytes: 0 },
    replays: [],
    workflowId: null,
    step: null,
    attempts: [],
  };
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
    replays: replaysOf(row),
    workflowId: row.workflow_id,
    step: row.step,
  };
}

function replaysOf(row: Pick<JobRow, "replays">): Replay[] {
  return row.replays === null ? [] : (JSON.parse(row.replays) as Replay[]);
}

/** The replays column once `replay` is added to it. */
export function replaysColumn(row: Pick<JobRow, "replays">, replay: Replay): string {
  return JSON.stringify([...replaysOf(row), replay]);
}

/**
 * A job with its attempts, each replay marked on the attempt that followed it. An attempt's
 * row is written when it ends; the one running is read from the job's row.
 */
export function detailFromRows(row: JobRow, attempts: readonly AttemptRow[]): JobDetail {
  const job = jobFromRow(row);
  const replayed = new Map(job.replays.map((r) => [r.afterAttempt + 1, r.afterAttempt]));
  const all = [...attempts];
  const running = runningAttempt(row);
  if (running && !attempts.some((attempt) => attempt.attempt === running.attempt)) {
    all.push(running);
  }
  // Assigned rather than spread: copying the job's 36 properties cost 2.8 µs, three times
  // building it, on every submit's answer.
  return Object.assign(job, {
    attempts: all.map((attempt) => attemptFromRow(attempt, replayed.get(attempt.attempt))),
  });
}

/** The attempt a running job's row describes (its row in `attempts` comes when it ends). */
function runningAttempt(row: JobRow): AttemptRow | null {
  if (row.state !== "running" || row.worker_id === null || row.started_at === null) return null;
  return {
    attempt: row.attempt,
    worker_id: row.worker_id,
    started_at: row.started_at,
    finished_at: null,
    exit_code: null,
    signal: null,
    failure_reason: null,
    failure_message: null,
  };
}

function attemptFromRow(row: AttemptRow, replayOf: number | undefined): Attempt {
  return {
    attempt: row.attempt,
    replayOf: replayOf ?? null,
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

/** The columns of a job row that completing an attempt reads. */
export type OutcomeRow = Pick<
  JobRow,
  | "id"
  | "state"
  | "attempt"
  | "attempts_used"
  | "max_attempts"
  | "backoff_base_ms"
  | "backoff_max_ms"
  | "cancel_requested"
  | "run_at"
  | "worker_id"
  | "started_at"
>;

/** The SELECT list of an `OutcomeRow`. */
export const OUTCOME_COLUMNS =
  "id, state, attempt, attempts_used, max_attempts, backoff_base_ms, backoff_max_ms," +
  " cancel_requested, run_at, worker_id, started_at";

/** What an attempt's outcome does to its job, decided from the job's row. */
export function nextStateOf(
  row: OutcomeRow,
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

/** A row of `workers`. */
export interface WorkerRow {
  name: string;
  host: string;
  pid: number;
  queues: string | null;
  runs: string | null;
  concurrency: number;
  cpus: number;
  memory_mb: number | null;
  ttl_ms: number;
  drain: number;
  started_at: number;
  last_seen_at: number;
  stopped_at: number | null;
}

/** A running job, as the registry counts what a worker uses. */
export interface RunningRow {
  id: number;
  worker_id: string;
  cpus: number;
  memory_mb: number | null;
}

/** Workers seen since this long ago are listed. */
export const WORKER_LISTING_MS = 86_400_000;

export function workersFromRows(
  rows: readonly WorkerRow[],
  running: readonly RunningRow[],
  now: number,
): WorkerInfo[] {
  const held = new Map<string, RunningRow[]>();
  for (const job of running) {
    const list = held.get(job.worker_id) ?? [];
    list.push(job);
    held.set(job.worker_id, list);
  }
  return rows.map((row) => {
    const jobs = held.get(row.name) ?? [];
    let state: WorkerStatus = "running";
    if (row.stopped_at !== null) state = "stopped";
    else if (row.last_seen_at < now - row.ttl_ms) state = "lost";
    else if (row.drain === 1) state = "draining";
    return {
      name: row.name,
      host: row.host,
      pid: row.pid,
      state,
      queues: row.queues === null ? null : (JSON.parse(row.queues) as string[]),
      runs: row.runs === null ? null : (JSON.parse(row.runs) as WorkerRuns),
      concurrency: row.concurrency,
      cpus: row.cpus,
      memoryMb: row.memory_mb,
      running: jobs.length,
      runningJobs: jobs.map((job) => String(job.id)),
      usedCpus: jobs.reduce((sum, job) => sum + job.cpus, 0),
      usedMemoryMb: jobs.reduce((sum, job) => sum + (job.memory_mb ?? 0), 0),
      startedAt: row.started_at,
      lastHeartbeatAt: row.last_seen_at,
    };
  });
}

/** Per-queue counts for stats; `since` is the parameter as the dialect names it. */
export function queueCountsSql(jobs: string, since: string): string {
  const count = (condition: string) => `SUM(CASE WHEN ${condition} THEN 1 ELSE 0 END)`;
  return `SELECT queue,
      ${count(`created_at >= ${since}`)} AS submitted,
      ${count(`state = 'succeeded' AND finished_at >= ${since}`)} AS succeeded,
      ${count(`state = 'failed' AND finished_at >= ${since}`)} AS failed,
      ${count(`state = 'cancelled' AND finished_at >= ${since}`)} AS cancelled,
      ${count("state = 'running'")} AS running,
      ${count("state = 'pending'")} AS queued
    FROM ${jobs} GROUP BY queue ORDER BY queue`;
}

/** Run times (the last attempt's) of the jobs that finished since `since`. */
export function runTimesSql(jobs: string, since: string): string {
  return `SELECT queue, finished_at - started_at AS ms FROM ${jobs}
    WHERE finished_at >= ${since} AND state IN ('succeeded', 'failed') AND started_at IS NOT NULL`;
}

export function countsFromRows(rows: readonly QueueCounts[]): QueueCounts[] {
  return rows.map((row) => ({
    queue: row.queue,
    submitted: Number(row.submitted),
    succeeded: Number(row.succeeded),
    failed: Number(row.failed),
    cancelled: Number(row.cancelled),
    running: Number(row.running),
    queued: Number(row.queued),
  }));
}

export function runTimesByQueue(rows: ReadonlyArray<{ queue: string; ms: number }>) {
  const byQueue = new Map<string, number[]>();
  for (const row of rows) {
    const list = byQueue.get(row.queue) ?? [];
    list.push(Number(row.ms));
    byQueue.set(row.queue, list);
  }
  return byQueue;
}
