import { spawn } from "node:child_process";
import { mkdirSync } from "node:fs";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { readProcStat } from "../executors/processGroup.js";
import type { JobKind } from "../core/job.js";
import type { Executor } from "../executors/executor.js";
import { ShellExecutor } from "../executors/shellExecutor.js";
import type { Logger } from "../logger.js";
import type { Claim, Store, StoreChange } from "../store/store.js";
import { FailureLog } from "./failureLog.js";
import { JobRun } from "./jobRun.js";
import { type LeaseEntry, writeLeaseTable } from "./leaseTable.js";

export type WorkerState = "starting" | "running" | "draining" | "stopped";

export interface WorkerOptions {
  store: Store;
  logger: Logger;
  executor?: Executor;
  name: string;
  /** null: every queue. */
  queues: readonly string[] | null;
  concurrency: number;
  cpus: number;
  memoryMb: number | null;
  /** Holds the per-attempt job directories. */
  stateDir: string;
  leaseTtlMs: number;
  heartbeatIntervalMs: number;
  maxHeartbeatFailures: number;
  killGraceMs: number;
  flushIntervalMs: number;
  flushMaxEvents: number;
  maxBufferedEvents: number;
  pollIntervalMs: number;
  /** Also turn expired leases into retries or failures (off when a server in-process does it). */
  reap: boolean;
  reapIntervalMs: number;
  /**
   * Start the watchdog process that stops jobs whose lease expires unrenewed, even after this
   * worker died. Off only where the compiled watchdog is not at hand (in-process tests).
   */
  watchdog: boolean;
}

const KINDS: readonly JobKind[] = ["shell"];
const WORKER_START_TIME = readProcStat(process.pid)?.startTime ?? null;

/**
 * Claims jobs that fit its free capacity, runs them, renews their leases and records their
 * outcomes. Woken by the store's change notifications; the poll timer is only a safety net.
 */
export class Worker {
  private state: WorkerState = "starting";
  /** Keyed by job and attempt: a retry may start here while its failed attempt winds down. */
  private readonly runs = new Map<string, JobRun>();
  private readonly heartbeatFailures = new Map<JobRun, number>();
  private readonly log: Logger;
  private readonly claimFailures: FailureLog;
  private usedCpus = 0;
  private usedMemoryMb = 0;
  private claiming = false;
  private claimAgain = false;
  private checkingCancels = false;
  private timers: NodeJS.Timeout[] = [];
  private unwatch: () => void = () => {};
  private leaseTablePath: string | null = null;
  private leaseTableWrite: NodeJS.Immediate | null = null;

  constructor(private readonly options: WorkerOptions) {
    this.log = options.logger.child({ worker: options.name });
    this.claimFailures = new FailureLog(this.log, "claiming jobs");
  }

  get name(): string {
    return this.options.name;
  }

  get runningJobs(): number {
    return this.runs.size;
  }

  start(): void {
    const { options } = this;
    if (options.watchdog) this.startWatchdog();
    this.unwatch = options.store.watch((change) => this.onStoreChange(change));
    this.every(options.pollIntervalMs, () => this.claimSoon());
    this.every(options.heartbeatIntervalMs, () => {
      void this.heartbeatAll();
    });
    if (options.reap) this.every(options.reapIntervalMs, () => void this.reap());
    this.setState("running");
    this.claimSoon();
  }

  /**
   * Graceful stop: claims nothing more, lets running jobs finish for up to `graceMs`, then
   * stops the rest and releases them to pending without spending an attempt.
   */
  async stop(graceMs: number): Promise<void> {
    if (this.state === "stopped") return;
    this.setState("draining");
    const all = () => Promise.all([...this.runs.values()].map((run) => run.finished));
    let graceTimer: NodeJS.Timeout | undefined;
    const graceOver = new Promise<void>((resolve) => {
      graceTimer = setTimeout(resolve, graceMs);
    });
    await Promise.race([all(), graceOver]);
    clearTimeout(graceTimer);
    this.stopAllRuns();
    await all();
    for (const timer of this.timers) clearInterval(timer);
    this.timers = [];
    this.unwatch();
    this.writeLeaseTable();
    this.setState("stopped");
  }

  /** Second signal: stop every running job now (they are released to pending). */
  stopAllRuns(): void {
    for (const run of this.runs.values()) run.stop("shutdown");
  }

  private setState(next: WorkerState): void {
    this.log.info({ from: this.state, to: next }, `worker ${next}`);
    this.state = next;
  }

  private every(ms: number, task: () => void): void {
    this.timers.push(setInterval(task, ms));
  }

  private onStoreChange(change: StoreChange): void {
    switch (change.type) {
      case "job_available":
        this.claimSoon();
        break;
      case "cancel_requested":
        if ([...this.runs.values()].some((run) => run.job.id === change.jobId)) {
          void this.checkCancels();
        }
        break;
      case "external":
        this.claimSoon();
        void this.checkCancels();
        break;
      default:
        break;
    }
  }

  /** Starts a claim round, or asks the running one to go round again. */
  private claimSoon(): void {
    if (this.state !== "running") return;
    if (this.claiming) {
      this.claimAgain = true;
      return;
    }
    this.claiming = true;
    void this.claimRound().finally(() => {
      this.claiming = false;
      if (this.claimAgain) {
        this.claimAgain = false;
        this.claimSoon();
      }
    });
  }

  private async claimRound(): Promise<void> {
    const { options } = this;
    while (this.state === "running" && this.runs.size < options.concurrency) {
      let claim: Claim | null;
      try {
        claim = await options.store.claim({
          workerId: options.name,
          queues: options.queues,
          kinds: KINDS,
          freeCpus: options.cpus - this.usedCpus,
          freeMemoryMb: options.memoryMb === null ? null : options.memoryMb - this.usedMemoryMb,
          leaseTtlMs: options.leaseTtlMs,
        });
        this.claimFailures.succeeded();
      } catch (error) {
        this.claimFailures.failed(error);
        return;
      }
      if (!claim) return;
      this.startRun(claim);
    }
  }

  private startRun(claim: Claim): void {
    const { options } = this;
    const { job } = claim;
    const memory = job.resources.memoryMb ?? 0;
    this.usedCpus += job.resources.cpus;
    this.usedMemoryMb += memory;
    this.log.info({ jobId: job.id, attempt: claim.lease.attempt }, "job claimed");
    const run = new JobRun({
      store: options.store,
      executor: options.executor ?? defaultExecutor,
      logger: this.log,
      job,
      lease: claim.lease,
      workRoot: join(options.stateDir, "work"),
      killGraceMs: options.killGraceMs,
      leaseExpiresAt: claim.expiresAt,
      flushIntervalMs: options.flushIntervalMs,
      flushMaxEvents: options.flushMaxEvents,
      maxBufferedEvents: options.maxBufferedEvents,
    });
    const key = runKey(claim.lease.jobId, claim.lease.attempt);
    this.runs.set(key, run);
    // At once, not coalesced: the watchdog must know the job before this process can die.
    this.writeLeaseTable();
    void run.finished.finally(() => {
      this.leaseTableChanged();
      // Released exactly once: a run finishes once, and only here gives capacity back.
      this.runs.delete(key);
      this.heartbeatFailures.delete(run);
      this.usedCpus -= job.resources.cpus;
      this.usedMemoryMb -= memory;
      this.claimSoon();
    });
  }

  private async heartbeatAll(): Promise<void> {
    const { options } = this;
    await Promise.allSettled(
      [...this.runs.values()].map(async (run) => {
        try {
          const answer = await withTimeout(
            options.store.heartbeat(run.lease, options.leaseTtlMs),
            options.heartbeatIntervalMs,
            "the heartbeat got no answer",
          );
          this.heartbeatFailures.delete(run);
          if (!answer.held) {
            run.stop(
              "lease_lost",
              "the store refused the heartbeat: another attempt holds the job",
            );
          } else {
            run.leaseRenewed(answer.expiresAt);
            if (answer.cancel) run.stop("cancel");
          }
        } catch (error) {
          const failures = (this.heartbeatFailures.get(run) ?? 0) + 1;
          this.heartbeatFailures.set(run, failures);
          this.log.warn({ err: error, jobId: run.job.id, failures }, "heartbeat failed");
          if (failures >= options.maxHeartbeatFailures) {
            run.stop(
              "heartbeat_failed",
              `${failures} consecutive heartbeats failed (last: ${(error as Error).message}); ` +
                "stopped before the lease could expire and the job be handed to another worker",
            );
          }
        }
      }),
    );
    this.leaseTableChanged();
  }

  /** Starts the watchdog in a session of its own, so that it outlives this process. */
  private startWatchdog(): void {
    const { stateDir, killGraceMs } = this.options;
    mkdirSync(stateDir, { recursive: true });
    this.leaseTablePath = join(stateDir, `leases-${process.pid}.json`);
    this.writeLeaseTable();
    const script = fileURLToPath(new URL("./watchdogMain.js", import.meta.url));
    const watchdog = spawn(process.execPath, [script, this.leaseTablePath], {
      detached: true,
      stdio: "ignore",
      env: {
        ...process.env,
        BATON_WATCHDOG_TICK_MS: String(Math.min(200, Math.max(20, killGraceMs / 5))),
      },
    });
    watchdog.on("error", (error) =>
      this.log.error({ err: error }, "could not start the job watchdog"),
    );
    watchdog.unref();
    this.log.info({ pid: watchdog.pid, leaseTable: this.leaseTablePath }, "job watchdog started");
  }

  /** Coalesces lease-table writes: one per turn of the event loop, however many jobs changed. */
  private leaseTableChanged(): void {
    if (!this.leaseTablePath || this.leaseTableWrite) return;
    this.leaseTableWrite = setImmediate(() => {
      this.leaseTableWrite = null;
      this.writeLeaseTable();
    });
  }

  /** Tells the watchdog which process groups run under which lease. */
  private writeLeaseTable(): void {
    if (this.leaseTableWrite) clearImmediate(this.leaseTableWrite);
    this.leaseTableWrite = null;
    if (!this.leaseTablePath) return;
    const jobs: LeaseEntry[] = [];
    for (const run of this.runs.values()) {
      const pgid = run.pid;
      if (pgid === null) continue;
      jobs.push({
        jobId: run.job.id,
        attempt: run.lease.attempt,
        pgid,
        leaderStartTime: run.pidStartTime,
        expiresAt: run.leaseExpiresAt,
      });
    }
    try {
      writeLeaseTable(this.leaseTablePath, {
        workerPid: process.pid,
        workerStartTime: WORKER_START_TIME,
        killGraceMs: this.options.killGraceMs,
        jobs,
      });
    } catch (error) {
      this.log.error({ err: error, path: this.leaseTablePath }, "could not write the lease table");
    }
  }

  private async checkCancels(): Promise<void> {
    if (this.runs.size === 0 || this.checkingCancels) return;
    this.checkingCancels = true;
    try {
      const leases = await this.options.store.cancelRequests(this.options.name);
      for (const lease of leases) this.runs.get(runKey(lease.jobId, lease.attempt))?.stop("cancel");
    } catch (error) {
      this.log.warn({ err: error }, "checking for cancelled jobs failed; the next heartbeat will");
    } finally {
      this.checkingCancels = false;
    }
  }

  private async reap(): Promise<void> {
    try {
      const reaped = await this.options.store.reapExpired();
      if (reaped > 0) this.log.warn({ reaped }, "expired leases reaped");
    } catch (error) {
      this.log.warn({ err: error }, "reaping expired leases failed");
    }
  }
}

const defaultExecutor = new ShellExecutor();

function runKey(jobId: string, attempt: number): string {
  return `${jobId}#${attempt}`;
}

/** Rejects when `promise` has not settled within `ms`; the timer never outlives the race. */
async function withTimeout<T>(promise: Promise<T>, ms: number, message: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`${message} within ${ms}ms`)), ms);
  });
  try {
    return await Promise.race([promise, timeout]);
  } finally {
    clearTimeout(timer);
  }
}
