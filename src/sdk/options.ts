import { parseDuration } from "../core/duration.js";
import { invalid } from "../core/errors.js";
import type { JobInput } from "../core/jobInput.js";

/** A duration: milliseconds, or text such as "500ms", "30s", "5m", "1h". */
export type Duration = number | string;

/** Options of a handler job, as for shell jobs. */
export interface EnqueueOptions {
  queue?: string;
  /** 1 (most urgent) … 10; default 5. */
  priority?: number;
  /** Start no earlier than this long from now. */
  delay?: Duration;
  /** Start no earlier than this time. */
  runAt?: Date | string;
  /** Attempts in all, the first included; handler jobs default to 3. */
  maxAttempts?: number;
  /** Delay before the first retry (doubled for each further one, ±20 % jitter), and its cap. */
  backoff?: Duration | { base?: Duration; max?: Duration };
  /** The attempt's signal aborts, and it fails as `timeout`, after this long. */
  timeout?: Duration;
  /** A second enqueue with the same key returns the first job while it lives. */
  idempotencyKey?: string;
  /** At most `concurrencyLimit` (default 1) jobs sharing this key run at once, anywhere. */
  concurrencyKey?: string;
  concurrencyLimit?: number;
  labels?: Record<string, string>;
  /** CPUs the job takes from the worker's capacity (handler jobs take none by default). */
  cpus?: number;
  /** Bytes of the job's log kept (default 64 MiB). */
  maxLogBytes?: number;
}

/** The job input of one handler job, as the HTTP API takes it. */
export function handlerJobInput(
  handler: string,
  payload: unknown,
  options: EnqueueOptions = {},
): JobInput {
  const input: JobInput = { handler, payload: jsonPayload(payload) };
  if (options.queue !== undefined) input.queue = options.queue;
  if (options.priority !== undefined) input.priority = options.priority;
  if (options.delay !== undefined) input.delayMs = ms("delay", options.delay);
  if (options.runAt !== undefined) {
    input.runAt = options.runAt instanceof Date ? options.runAt.toISOString() : options.runAt;
  }
  if (options.maxAttempts !== undefined) input.maxAttempts = options.maxAttempts;
  if (options.backoff !== undefined) {
    const backoff = options.backoff;
    input.backoff =
      typeof backoff === "object"
        ? {
            ...(backoff.base === undefined ? {} : { baseMs: ms("backoff.base", backoff.base) }),
            ...(backoff.max === undefined ? {} : { maxMs: ms("backoff.max", backoff.max) }),
          }
        : { baseMs: ms("backoff", backoff) };
  }
  if (options.timeout !== undefined) input.timeoutMs = ms("timeout", options.timeout);
  if (options.idempotencyKey !== undefined) input.idempotencyKey = options.idempotencyKey;
  if (options.concurrencyKey !== undefined) input.concurrencyKey = options.concurrencyKey;
  if (options.concurrencyLimit !== undefined) input.concurrencyLimit = options.concurrencyLimit;
  if (options.labels !== undefined) input.labels = options.labels;
  if (options.cpus !== undefined) input.resources = { cpus: options.cpus };
  if (options.maxLogBytes !== undefined) input.maxLogBytes = options.maxLogBytes;
  return input;
}

export function ms(field: string, value: Duration): number {
  if (typeof value === "number") {
    if (!Number.isInteger(value) || value < 0) {
      throw invalid(field, `must be a whole number of milliseconds ≥ 0, got ${value}`);
    }
    return value;
  }
  const parsed = parseDuration(value);
  if (parsed === null) {
    throw invalid(field, `must be a duration such as 500ms, 30s, 5m or 1h, got "${value}"`);
  }
  return parsed;
}

/** The payload as it will be stored: JSON (undefined as null); anything else is refused. */
function jsonPayload(payload: unknown): unknown {
  if (payload === undefined) return null;
  let text: string | undefined;
  try {
    text = JSON.stringify(payload);
  } catch (error) {
    throw invalid("payload", `must be JSON: ${(error as Error).message}`);
  }
  if (text === undefined) throw invalid("payload", "must be JSON (got a function or symbol)");
  return JSON.parse(text) as unknown;
}
