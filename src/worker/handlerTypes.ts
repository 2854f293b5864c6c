import type { JobJson } from "../api/jobJson.js";

/**
 * What a handler gets besides its payload. Lives beside the worker that provides it; the
 * SDK re-exports it.
 */
export interface HandlerContext {
  /**
   * Aborts when the job is cancelled, times out, loses its lease or the worker shuts down;
   * `signal.reason` is a `JobStopped` naming which. Pass it to fetch, timers and child
   * processes, or check `signal.aborted` between steps.
   */
  readonly signal: AbortSignal;
  /** The number of this claim of the job: 1 for the first attempt. */
  readonly attempt: number;
  /** The job as it was claimed (id, queue, labels…), shown as the HTTP API shows it. */
  readonly job: JobJson;
  /** Adds a line to the job's log (`baton logs ID`). */
  log(message: string, stream?: "stdout" | "stderr"): void;
  /** Reports progress, 0–100 (shown in `baton jobs show`). */
  progress(percent: number): void;
  /** Adds a structured event (any JSON value) to the job's log. */
  emit(data: unknown): void;
}

/** A handler: takes the job's payload, returns its result (any JSON value). */
export type Handler<Payload = never, Result = unknown> = (
  payload: Payload,
  ctx: HandlerContext,
) => Result | Promise<Result>;

/** Handlers by name. `never` as the payload lets every handler's own payload type fit. */
export type HandlerMap = Record<string, Handler<never, unknown>>;

/** Why a handler's signal aborted. */
export type StopCause = "cancel" | "timeout" | "lease_lost" | "heartbeat_failed" | "shutdown";

/** The reason a handler's `ctx.signal` carries. */
export class JobStopped extends Error {
  override readonly name = "JobStopped";
  constructor(
    readonly stopCause: StopCause,
    message: string,
  ) {
    super(message);
  }
}

/**
 * Thrown by a handler to fail the job at once, with no further attempts: another attempt
 * cannot turn out differently (bad payload, a permanent refusal).
 */
export class NonRetryableError extends Error {
  override readonly name = "NonRetryableError";
}
