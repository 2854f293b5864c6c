import { hostname } from "node:os";
import type { WorkerRuns } from "../core/pool.js";
import { FailureLog } from "../failureLog.js";
import type { Logger } from "../logger.js";
import type { Claim, Lease, StoreChange, WorkerStore } from "../store/store.js";

export interface WorkerRoutineOptions {
  store: WorkerStore;
  log: Logger;
  name: string;
  /** null: every queue. */
  queues: readonly string[] | null;
  runs: WorkerRuns;
  concurrency: number;
  cpus: number;
  memoryMb: number | null;
  leaseTtlMs: number;
  pollIntervalMs: number;
  heartbeatIntervalMs: number;
  /** Also turn expired leases into retries or failures (off when a server does it). */
  reap: boolean;
  reapIntervalMs: number;
}

/** What the routine needs of the worker that keeps it. */
export interface RoutineDuties {
  /** Starts a claim round, or asks the running one to go round again. */
  claimSoon(): void;
  /** Renews the leases of every attempt the worker holds. */
  heartbeat(): Promise<void>;
  /** An operator asked for a drain: claim nothing more. */
  drain(): void;
  holdsAny(): boolean;
  /** Whether a claim is on its way (what it brings may yet be held or given back). */
  claiming(): boolean;
  holdsJob(jobId: string): boolean;
  /** Stops the attempt holding this lease, if the worker has it: its job was cancelled. */
  cancel(lease: Lease): void;
}

/**
 * What every worker does besides running jobs, whatever it runs: it reports itself to the
 * worker registry and follows an operator's orders there (a new number of slots, a drain),
 * claims when the store says work is there (a poll timer as safety net), renews its leases
 * on every heartbeat, looks for cancel requests of jobs it holds, and may reap expired leases.
 */
export class WorkerRoutine {
  /** Job slots: the configured number until an operator resizes the worker. */
  private slots: number;
  private registered = false;
  private beating = false;
  private checkingCancels = false;
  private drainRequested = false;
  private onDrained: () => void = () => {};
  /** Resolves once an operator's drain has let every held job finish. */
  readonly drained: Promise<void>;
  private timers: NodeJS.Timeout[] = [];
  private unwatch: () => void = () => {};
  private readonly registryFailures: FailureLog;
  private readonly reapFailures: FailureLog;
  private readonly cancelCheckFailures: FailureLog;

  constructor(
    private readonly options: WorkerRoutineOptions,
    private readonly duties: RoutineDuties,
  ) {
    this.slots = options.concurrency;
    this.registryFailures = new FailureLog(options.log, "reporting to the worker registry");
    this.reapFailures = new FailureLog(options.log, "reaping expired leases");
    this.cancelCheckFailures = new FailureLog(options.log, "checking for cancelled jobs");
    this.drained = new Promise((resolve) => {
      this.onDrained = resolve;
    });
  }

  get concurrency(): number {
    return this.slots;
  }

  /** Reports to the registry for the first time: this worker's settings replace its entry. */
  register(): Promise<void> {
    return this.beat();
  }

  /** Follows the store's changes and starts the timers. */
  start(): void {
    const { options, duties } = this;
    this.unwatch = options.store.watch((change) => this.onStoreChange(change));
    this.every(options.pollIntervalMs, () => duties.claimSoon());
    this.every(options.heartbeatIntervalMs, () => {
      void duties.heartbeat();
      void this.beat();
    });
    if (options.reap) this.every(options.reapIntervalMs, () => void this.reap());
  }

  /** Stops the timers and stops following the store's changes. */
  quiet(): void {
    for (const timer of this.timers) clearInterval(timer);
    this.timers = [];
    this.unwatch();
    this.unwatch = () => {};
  }

  /** Quiet, and marked stopped in the registry. */
  async stop(): Promise<void> {
    this.quiet();
    await this.options.store.stopWorker(this.options.name).catch((error: unknown) => {
      this.options.log.warn({ err: error }, "could not mark this worker stopped in the registry");
    });
  }

  /**
   * To be called whenever a held job is let go and whenever a claim round ends: ends a drain
   * once no job is held and no claim is on its way.
   */
  settleDrain(): void {
    if (this.drainRequested && !this.duties.holdsAny() && !this.duties.claiming()) {
      this.onDrained();
    }
  }

  private every(ms: number, task: () => void): void {
    this.timers.push(setInterval(task, ms));
  }

  private onStoreChange(change: StoreChange): void {
    switch (change.type) {
      // A job was added or put back, or one that ended freed a limited queue's or key's slot
      // (jobs ending elsewhere are not news to a claimer otherwise: every worker looking
      // again after each of them would cost the store a claim per worker per job).
      case "job_available":
        this.duties.claimSoon();
        break;
      case "cancel_requested":
        if (this.duties.holdsJob(change.jobId)) void this.checkCancels();
        break;
      case "external":
        this.duties.claimSoon();
        void this.checkCancels();
        break;
      default:
        break;
    }
  }

  private async beat(): Promise<void> {
    if (this.beating) return;
    this.beating = true;
    const { options, duties } = this;
    try {
      const orders = await options.store.beatWorker({
        name: options.name,
        host: hostname(),
        pid: process.pid,
        queues: options.queues,
        runs: options.runs,
        concurrency: this.slots,
        cpus: options.cpus,
        memoryMb: options.memoryMb,
        ttlMs: options.leaseTtlMs,
        fresh: !this.registered,
      });
      this.registered = true;
      this.registryFailures.succeeded();
      if (orders.concurrency !== this.slots) {
        options.log.info(
          { from: this.slots, to: orders.concurrency },
          "concurrency changed by an operator",
        );
        this.slots = orders.concurrency;
        duties.claimSoon();
      }
      if (orders.drain && !this.drainRequested) {
        this.drainRequested = true;
        duties.drain();
        this.settleDrain();
      }
    } catch (error) {
      this.registryFailures.failed(error);
    } finally {
      this.beating = false;
    }
  }

  private async checkCancels(): Promise<void> {
    if (!this.duties.holdsAny() || this.checkingCancels) return;
    this.checkingCancels = true;
    try {
      const leases = await this.options.store.cancelRequests(this.options.name);
      this.cancelCheckFailures.succeeded();
      for (const lease of leases) this.duties.cancel(lease);
    } catch (error) {
      this.cancelCheckFailures.failed(error);
    } finally {
      this.checkingCancels = false;
    }
  }

  private async reap(): Promise<void> {
    try {
      const reaped = await this.options.store.reapExpired();
      this.reapFailures.succeeded();
      if (reaped > 0) this.options.log.warn({ reaped }, "expired leases reaped");
    } catch (error) {
      this.reapFailures.failed(error);
    }
  }
}

/**
 * A graceful stop's wait: lets the held runs finish for up to `graceMs`, then stops the
 * rest and waits for them to wind down.
 */
export async function letFinish(
  graceMs: number,
  finishing: () => Array<Promise<void>>,
  stopRest: () => void,
): Promise<void> {
  const all = () => Promise.all(finishing());
  let graceTimer: NodeJS.Timeout | undefined;
  const graceOver = new Promise<void>((resolve) => {
    graceTimer = setTimeout(resolve, graceMs);
  });
  await Promise.race([all(), graceOver]);
  clearTimeout(graceTimer);
  stopRest();
  await all();
}

/**
 * Claims a worker will not run (answered after it began to stop or drain) go back to
 * pending, their attempts not spent.
 */
export async function giveBack(
  store: WorkerStore,
  log: Logger,
  worker: string,
  claims: readonly Claim[],
): Promise<void> {
  const message = `worker ${worker} stopped claiming before it started the job`;
  await Promise.all(
    claims.map((claim) =>
      store.release(claim.lease, message).catch((error: unknown) => {
        log.warn({ err: error, jobId: claim.job.id }, "could not give back a claimed job");
      }),
    ),
  );
}
