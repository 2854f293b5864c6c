import { type JobJson, jobToJson } from "../api/jobJson.js";
import type { Job } from "../core/job.js";
import { type OutputLine, plainLine } from "../core/logEvent.js";
import type { HandlerContext, HandlerMap } from "./handlerTypes.js";

/** One run of a handler, as the worker hands it to a runner. */
export interface HandlerTask {
  job: Job;
  attempt: number;
  signal: AbortSignal;
  /** Receives what the handler logs, reports and emits, in order. */
  output(line: OutputLine): void;
}

/** How a handler's run ended. `final`: it threw `NonRetryableError`. */
export type HandlerSettled =
  { ok: true; result: unknown } | { ok: false; message: string; final: boolean };

/** Runs handlers: in the worker's own event loop, or in worker threads. */
export interface HandlerRunner {
  readonly names: readonly string[];
  run(task: HandlerTask): Promise<HandlerSettled>;
  close(): Promise<void>;
}

/** Runs handlers in the worker's own event loop: the fastest way, for handlers that await. */
export class InlineRunner implements HandlerRunner {
  readonly names: readonly string[];

  constructor(private readonly handlers: HandlerMap) {
    this.names = Object.keys(handlers);
  }

  async run(task: HandlerTask): Promise<HandlerSettled> {
    return runHandler(this.handlers, task);
  }

  async close(): Promise<void> {}
}

/** Calls the job's handler with its payload and a context; never throws. */
export async function runHandler(handlers: HandlerMap, task: HandlerTask): Promise<HandlerSettled> {
  const name = task.job.handler ?? "";
  const handler = Object.hasOwn(handlers, name) ? handlers[name] : undefined;
  if (!handler) return { ok: false, message: `no handler named "${name}"`, final: true };
  try {
    const result = await handler(task.job.payload as never, handlerContext(task));
    return { ok: true, result: jsonValue(result) };
  } catch (error) {
    return settledError(error);
  }
}

export function settledError(error: unknown): HandlerSettled {
  const message = error instanceof Error ? error.message || error.name : String(error);
  // By name, not instanceof: the class may come from another copy of the package or thread.
  const final = error instanceof Error && error.name === "NonRetryableError";
  return { ok: false, message, final };
}

/** The result as it will be stored: JSON, with undefined as null. */
function jsonValue(result: unknown): unknown {
  if (result === undefined) return null;
  try {
    return JSON.parse(JSON.stringify(result)) as unknown;
  } catch (error) {
    throw new Error(`the handler's result is not JSON: ${(error as Error).message}`);
  }
}

export function handlerContext(task: HandlerTask): HandlerContext {
  const output = (line: OutputLine) => task.output(line);
  let job: JobJson | null = null;
  return {
    // Read when the handler asks: the worker makes a job's signal only then.
    get signal() {
      return task.signal;
    },
    attempt: task.attempt,
    // Converted on first use: most handlers never look.
    get job() {
      job ??= jobToJson(task.job);
      return job;
    },
    log(message, stream = "stdout") {
      for (const line of String(message).split("\n")) output(plainLine(stream, line, Date.now()));
    },
    progress(percent) {
      if (!Number.isFinite(percent) || percent < 0 || percent > 100) {
        throw new RangeError(`progress wants a number from 0 to 100, got ${percent}`);
      }
      output({
        stream: "stdout",
        line: `::progress ${percent}`,
        ts: Date.now(),
        kind: "progress",
        data: { percent },
        cut: false,
      });
    },
    emit(data) {
      const text = JSON.stringify(data ?? null);
      output({
        stream: "stdout",
        line: `::event ${text}`,
        ts: Date.now(),
        kind: "event",
        data: JSON.parse(text) as unknown,
        cut: false,
      });
    },
  };
}
