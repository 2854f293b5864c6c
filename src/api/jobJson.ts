import type {
  Attempt,
  Failure,
  Job,
  JobDetail,
  JobKind,
  JobState,
  OutputStats,
} from "../core/job.js";

/** A job as the HTTP API, the CLI's --json and the SDK show it: times in ISO 8601. */
export interface JobJson {
  id: string;
  queue: string;
  kind: JobKind;
  command: string[] | null;
  script: string | null;
  handler: string | null;
  payload: unknown;
  priority: number;
  resources: { cpus: number; memoryMb: number | null };
  timeoutMs: number | null;
  maxAttempts: number;
  backoff: { baseMs: number; maxMs: number };
  runAt: string;
  idempotencyKey: string | null;
  concurrencyKey: string | null;
  concurrencyLimit: number;
  env: Record<string, string>;
  cwd: string | null;
  labels: Record<string, string>;
  state: JobState;
  attempt: number;
  workerId: string | null;
  createdAt: string;
  startedAt: string | null;
  finishedAt: string | null;
  exitCode: number | null;
  signal: string | null;
  result: unknown;
  failure: Failure | null;
  cancelRequested: boolean;
  maxLogBytes: number;
  progress: number | null;
  output: OutputStats;
  replays: Array<{ at: string; afterAttempt: number; failure: Failure | null }>;
  workflowId: string | null;
  step: string | null;
  attempts?: AttemptJson[];
}

export interface AttemptJson {
  attempt: number;
  replayOf: number | null;
  workerId: string;
  startedAt: string;
  finishedAt: string | null;
  exitCode: number | null;
  signal: string | null;
  failure: Failure | null;
}

export const iso = (ms: number) => new Date(ms).toISOString();
export const isoOrNull = (ms: number | null) => (ms === null ? null : iso(ms));

export function jobToJson(job: Job | JobDetail): JobJson {
  const json: JobJson = {
    id: job.id,
    queue: job.queue,
    kind: job.kind,
    command: job.command,
    script: job.script,
    handler: job.handler,
    payload: job.payload,
    priority: job.priority,
    resources: job.resources,
    timeoutMs: job.timeoutMs,
    maxAttempts: job.maxAttempts,
    backoff: job.backoff,
    runAt: iso(job.runAt),
    idempotencyKey: job.idempotencyKey,
    concurrencyKey: job.concurrencyKey,
    concurrencyLimit: job.concurrencyLimit,
    env: job.env,
    cwd: job.cwd,
    labels: job.labels,
    state: job.state,
    attempt: job.attempt,
    workerId: job.workerId,
    createdAt: iso(job.createdAt),
    startedAt: isoOrNull(job.startedAt),
    finishedAt: isoOrNull(job.finishedAt),
    exitCode: job.exitCode,
    signal: job.signal,
    result: job.result,
    failure: job.failure,
    cancelRequested: job.cancelRequested,
    maxLogBytes: job.maxLogBytes,
    progress: job.progress,
    output: job.output,
    replays: job.replays.map((replay) => ({ ...replay, at: iso(replay.at) })),
    workflowId: job.workflowId,
    step: job.step,
  };
  if ("attempts" in job) json.attempts = job.attempts.map(attemptToJson);
  return json;
}

function attemptToJson(attempt: Attempt): AttemptJson {
  return {
    attempt: attempt.attempt,
    replayOf: attempt.replayOf,
    workerId: attempt.workerId,
    startedAt: iso(attempt.startedAt),
    finishedAt: isoOrNull(attempt.finishedAt),
    exitCode: attempt.exitCode,
    signal: attempt.signal,
    failure: attempt.failure,
  };
}

/**
 * A job as the worker protocol carries it (claims, fenced answers): the API's JSON plus what
 * only a worker needs, without the attempts. `jobFromWorkerJson` gives back the same Job.
 */
export interface WorkerJobJson extends Omit<JobJson, "attempts"> {
  attemptsUsed: number;
}

export function jobToWorkerJson(job: Job): WorkerJobJson {
  const json = jobToJson(job);
  delete json.attempts;
  return { ...json, attemptsUsed: job.attemptsUsed };
}

/** Times come back as the epoch milliseconds they were (ISO 8601 keeps milliseconds). */
export function jobFromWorkerJson(json: WorkerJobJson): Job {
  return {
    id: json.id,
    queue: json.queue,
    kind: json.kind,
    command: json.command,
    script: json.script,
    handler: json.handler,
    payload: json.payload,
    priority: json.priority,
    resources: json.resources,
    timeoutMs: json.timeoutMs,
    maxAttempts: json.maxAttempts,
    backoff: json.backoff,
    runAt: ms(json.runAt),
    idempotencyKey: json.idempotencyKey,
    concurrencyKey: json.concurrencyKey,
    concurrencyLimit: json.concurrencyLimit,
    env: json.env,
    cwd: json.cwd,
    labels: json.labels,
    maxLogBytes: json.maxLogBytes,
    state: json.state,
    attempt: json.attempt,
    attemptsUsed: json.attemptsUsed,
    workerId: json.workerId,
    createdAt: ms(json.createdAt),
    startedAt: msOrNull(json.startedAt),
    finishedAt: msOrNull(json.finishedAt),
    exitCode: json.exitCode,
    signal: json.signal,
    result: json.result,
    failure: json.failure,
    cancelRequested: json.cancelRequested,
    progress: json.progress,
    output: json.output,
    replays: json.replays.map((replay) => ({ ...replay, at: ms(replay.at) })),
    workflowId: json.workflowId,
    step: json.step,
  };
}

/** Epoch milliseconds of an ISO 8601 time this API wrote; throws on anything else. */
export function ms(text: string): number {
  const value = Date.parse(text);
  if (Number.isNaN(value)) throw new Error(`not an ISO 8601 time: ${JSON.stringify(text)}`);
  return value;
}

export const msOrNull = (text: string | null) => (text === null ? null : ms(text));
