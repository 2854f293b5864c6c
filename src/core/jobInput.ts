import { invalid } from "./errors.js";
import { DEFAULT_MAX_LOG_BYTES, DEFAULT_PRIORITY, DEFAULT_QUEUE, type JobSpec } from "./job.js";
import { DEFAULT_BACKOFF, DEFAULT_MAX_ATTEMPTS } from "./retry.js";

/**
 * A job as a client submits it (`POST /v1/jobs`, `baton submit`). Structure and types are
 * checked at the edge by JSON schema; `normalizeJobInput` checks what a schema cannot
 * and applies every default, in this one place.
 */
export interface JobInput {
  queue?: string;
  command?: string[];
  script?: string;
  /** Name of a TypeScript handler a worker runs in-process, with `payload` (JSON). */
  handler?: string;
  payload?: unknown;
  priority?: number;
  resources?: { cpus?: number; memoryMb?: number };
  timeoutMs?: number;
  maxAttempts?: number;
  backoff?: { baseMs?: number; maxMs?: number };
  /** ISO 8601 time before which the job does not start. */
  runAt?: string;
  /** Alternative to runAt, relative to the store's clock. */
  delayMs?: number;
  idempotencyKey?: string;
  /** At most `concurrencyLimit` (default 1) jobs with this key run at once, anywhere. */
  concurrencyKey?: string;
  concurrencyLimit?: number;
  env?: Record<string, string>;
  cwd?: string;
  labels?: Record<string, string>;
  /** Cap on the job's stored output, in bytes (default 64 MiB). */
  maxLogBytes?: number;
}

const DEFAULT_CPUS = { shell: 1, handler: 0 } as const;

export function normalizeJobInput(input: JobInput, now: number): JobSpec {
  const given = [input.command, input.script, input.handler].filter((x) => x !== undefined);
  if (given.length !== 1) {
    throw invalid(
      "command",
      "give exactly one of command (an argv array), script or handler (a handler's name)",
    );
  }
  if (input.payload !== undefined && input.handler === undefined) {
    throw invalid("payload", "only a handler job takes a payload");
  }
  const kind = input.handler === undefined ? "shell" : "handler";
  if (kind === "handler" && (input.env !== undefined || input.cwd !== undefined)) {
    throw invalid(
      input.env !== undefined ? "env" : "cwd",
      "a handler job has no process to set it for",
    );
  }
  if (input.command !== undefined && (input.command[0] ?? "") === "") {
    throw invalid("command", "the program name (first element) must not be empty");
  }
  if (input.script !== undefined && input.script.trim() === "") {
    throw invalid("script", "must not be empty");
  }
  if (input.runAt !== undefined && input.delayMs !== undefined) {
    throw invalid("runAt", "give runAt or delayMs, not both");
  }
  let runAt = now;
  if (input.runAt !== undefined) {
    runAt = Date.parse(input.runAt);
    if (Number.isNaN(runAt)) throw invalid("runAt", "must be an ISO 8601 date-time");
  } else if (input.delayMs !== undefined) {
    runAt = now + input.delayMs;
  }
  if (input.cwd !== undefined && !input.cwd.startsWith("/")) {
    throw invalid("cwd", "must be an absolute path");
  }
  const backoff = {
    baseMs: input.backoff?.baseMs ?? DEFAULT_BACKOFF.baseMs,
    maxMs: input.backoff?.maxMs ?? DEFAULT_BACKOFF.maxMs,
  };
  if (backoff.maxMs < backoff.baseMs) {
    throw invalid("backoff.maxMs", "must not be less than backoff.baseMs");
  }
  return {
    queue: input.queue ?? DEFAULT_QUEUE,
    kind,
    command: input.command ?? null,
    script: input.script ?? null,
    handler: input.handler ?? null,
    payload: input.payload ?? null,
    priority: input.priority ?? DEFAULT_PRIORITY,
    // A handler runs inside the worker's own process: its slots bound it, not its CPUs.
    resources: {
      cpus: input.resources?.cpus ?? DEFAULT_CPUS[kind],
      memoryMb: input.resources?.memoryMb ?? null,
    },
    timeoutMs: input.timeoutMs ?? null,
    maxAttempts: input.maxAttempts ?? DEFAULT_MAX_ATTEMPTS[kind],
    backoff,
    runAt,
    idempotencyKey: input.idempotencyKey ?? null,
    concurrencyKey: input.concurrencyKey ?? null,
    concurrencyLimit: input.concurrencyLimit ?? 1,
    env: input.env ?? {},
    cwd: input.cwd ?? null,
    labels: input.labels ?? {},
    maxLogBytes: input.maxLogBytes ?? DEFAULT_MAX_LOG_BYTES,
  };
}
