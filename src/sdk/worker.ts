import { EventEmitter } from "node:events";
import { availableParallelism, hostname, totalmem } from "node:os";
import { type JobJson, jobToJson } from "../api/jobJson.js";
import { envName, loadConfig } from "../core/config.js";
import type { Failure, Job } from "../core/job.js";
import { createLogger, type Logger } from "../logger.js";
import type { WorkerStore } from "../store/store.js";
import { type HandlerRunner, InlineRunner } from "../worker/handlerRunner.js";
import { loadHandlers } from "../worker/handlerModule.js";
import type { HandlerMap } from "../worker/handlerTypes.js";
import { type HandlerEvent, HandlerWorker } from "../worker/handlerWorker.js";
import { ThreadRunner } from "../worker/threadRunner.js";
import type { Connection } from "./client.js";
import { type Duration, ms } from "./options.js";
import { acquireStore } from "./sharedStore.js";

export type WorkerOptions<H extends HandlerMap = HandlerMap> = Connection & {
  /**
   * The handlers: an object of functions, or the path or URL of a module exporting them
   * (`export const handlers = defineHandlers({…})`), which `isolation: "thread"` needs.
   */
  handlers: H | string | URL;
  /** Jobs run at once (default 10). */
  concurrency?: number;
  /** Queues served (default: all). */
  queues?: string[];
  /**
   * "inline" (default): handlers run in this event loop, the fastest way for handlers that
   * await. "thread": each runs in a worker thread, so a CPU-bound handler cannot starve the
   * heartbeats, and one that ignores its abort is stopped hard (its thread terminated).
   */
  isolation?: "inline" | "thread";
  /** The worker's name in the registry (default host-pid); one live worker per name. */
  name?: string;
  leaseTtl?: Duration;
  heartbeatInterval?: Duration;
  /** `stop()` lets running handlers finish for this long (default 30 s). */
  shutdownGrace?: Duration;
  /** A stopped handler has this long to return before it is abandoned (default 5 s). */
  killGrace?: Duration;
  /** Most jobs claimed, or outcomes recorded, per round trip (default 100). */
  batchSize?: number;
  /** Baton's own log (pino); false for none. Default: warnings, on stderr. */
  logger?: Logger | false;
};

/** The worker's typed events. Jobs are shown as the HTTP API shows them. */
export interface WorkerEvents {
  started: [event: { job: JobJson; attempt: number }];
  succeeded: [event: { job: JobJson; attempt: number; result: unknown; durationMs: number }];
  failed: [
    event: {
      job: JobJson;
      attempt: number;
      failure: Failure;
      /** The job will be tried again after its backoff. */
      retrying: boolean;
      durationMs: number;
    },
  ];
  cancelled: [event: { job: JobJson; attempt: number }];
  /** Given back to pending by `stop()`, its attempt not spent. */
  released: [event: { job: JobJson; attempt: number }];
  /** Another attempt holds the job now; the message says why (e.g. a blocked event loop). */
  leaseLost: [event: { job: JobJson; attempt: number; message: string }];
  /** The event loop was blocked for `ms`: the message names the handlers running then. */
  blocked: [event: { ms: number; message: string }];
}

/**
 * Runs handler jobs: `new Worker({ store: "sqlite:./app.db", handlers })`, then `start()`.
 * `stop()` is graceful, as `baton worker`'s: running handlers finish (up to the grace), the
 * rest are aborted and given back to pending without spending an attempt.
 */
export class Worker<H extends HandlerMap = HandlerMap> extends EventEmitter<WorkerEvents> {
  private engine: HandlerWorker | null = null;
  private release: () => Promise<void> = async () => {};
  private starting: Promise<void> | null = null;

  constructor(private readonly options: WorkerOptions<H>) {
    super();
  }

  get name(): string | null {
    return this.engine?.name ?? null;
  }

  /** Resolves once the worker runs: its store is open and it has claimed what it can. */
  start(): Promise<void> {
    this.starting ??= this.boot();
    return this.starting;
  }

  async stop(options: { grace?: Duration } = {}): Promise<void> {
    if (!this.starting) return;
    await this.starting.catch(() => {});
    const engine = this.engine;
    if (!engine) return;
    const grace = options.grace ?? this.options.shutdownGrace;
    await engine.stop(grace === undefined ? this.defaults().shutdownGraceMs : ms("grace", grace));
    this.engine = null;
    await this.release();
  }

  private defaults() {
    return loadConfig({
      env: process.env,
      flags: {},
      machine: {
        cpus: availableParallelism(),
        memoryMb: Math.floor(totalmem() / 2 ** 20),
        hostname: hostname(),
        pid: process.pid,
      },
    });
  }

  private async boot(): Promise<void> {
    const { options } = this;
    const config = this.defaults();
    const logger =
      options.logger === false
        ? createLogger("silent")
        : (options.logger ??
          createLogger(process.env[envName("logLevel")] ? config.logLevel : "warn"));
    const killGraceMs =
      options.killGrace === undefined ? 5_000 : ms("killGrace", options.killGrace);
    const runner = await makeRunner(options.handlers, options.isolation ?? "inline", killGraceMs);
    let store: WorkerStore;
    try {
      ({ store, release: this.release } = await this.openStore(logger));
    } catch (error) {
      await runner.close();
      throw error;
    }
    const leaseTtlMs =
      options.leaseTtl === undefined ? config.leaseTtlMs : ms("leaseTtl", options.leaseTtl);
    const heartbeatIntervalMs =
      options.heartbeatInterval === undefined
        ? Math.min(config.heartbeatIntervalMs, Math.floor(leaseTtlMs / 3))
        : ms("heartbeatInterval", options.heartbeatInterval);
    const engine = new HandlerWorker({
      store,
      runner,
      logger,
      name: options.name ?? `${hostname()}-${process.pid}`,
      queues: options.queues ?? null,
      concurrency: options.concurrency ?? 10,
      leaseTtlMs,
      heartbeatIntervalMs,
      maxHeartbeatFailures: config.maxHeartbeatFailures,
      killGraceMs,
      pollIntervalMs: config.pollIntervalMs,
      flushIntervalMs: config.flushIntervalMs,
      reap: "store" in options,
      reapIntervalMs: config.reapIntervalMs,
      batchSize: options.batchSize ?? 100,
      onEvent: (event) => this.forward(event),
    });
    try {
      await engine.start();
    } catch (error) {
      await runner.close();
      await this.release();
      throw error;
    }
    this.engine = engine;
  }

  private async openStore(
    logger: Logger,
  ): Promise<{ store: WorkerStore; release: () => Promise<void> }> {
    const { options } = this;
    if ("store" in options) return acquireStore(options.store, options.schema);
    const { RemoteWorkerStore } = await import("../client/remoteWorkerStore.js");
    const store = new RemoteWorkerStore({
      server: options.server,
      token: options.token ?? null,
      logger,
    });
    return { store, release: async () => store.close() };
  }

  private forward(event: HandlerEvent): void {
    if (event.type === "error") return;
    if (this.listenerCount(event.type) === 0) return;
    if (event.type === "blocked") {
      this.emit("blocked", { ms: event.ms, message: event.message });
      return;
    }
    const { attempt } = event;
    switch (event.type) {
      case "started":
      case "cancelled":
      case "released":
        this.emit(event.type, withJob(event.job, { attempt }));
        break;
      case "succeeded":
        this.emit(
          "succeeded",
          withJob(event.job, { attempt, result: event.result, durationMs: event.durationMs }),
        );
        break;
      case "failed":
        this.emit(
          "failed",
          withJob(event.job, {
            attempt,
            failure: event.failure,
            retrying: event.retrying,
            durationMs: event.durationMs,
          }),
        );
        break;
      case "leaseLost":
        this.emit("leaseLost", withJob(event.job, { attempt, message: event.message }));
        break;
    }
  }
}

/**
 * An event with the job as the HTTP API shows it, converted when first read: a listener
 * that only counts or looks at the result does not pay for the conversion.
 */
function withJob<T extends object>(job: Job, fields: T): T & { readonly job: JobJson } {
  let json: JobJson | undefined;
  return Object.defineProperty(fields, "job", {
    enumerable: true,
    get: () => (json ??= jobToJson(job)),
  }) as T & { readonly job: JobJson };
}

async function makeRunner(
  handlers: HandlerMap | string | URL,
  isolation: "inline" | "thread",
  killGraceMs: number,
): Promise<HandlerRunner> {
  const isModule = typeof handlers === "string" || handlers instanceof URL;
  if (isolation === "thread") {
    if (!isModule) {
      throw new TypeError(
        'isolation: "thread" needs `handlers` as a module path or URL (functions cannot ' +
          'cross into a thread), e.g. handlers: new URL("./handlers.js", import.meta.url)',
      );
    }
    return ThreadRunner.start(handlers, killGraceMs);
  }
  return new InlineRunner(isModule ? await loadHandlers(handlers) : handlers);
}
