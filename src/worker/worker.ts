import { mkdirSync, rmSync } from "node:fs";
import { join } from "node:path";
import type { JobKind } from "../core/job.js";
import type { Executor } from "../executors/executor.js";
import { readProcStat } from "../executors/processGroup.js";
import { ShellExecutor } from "../executors/shellExecutor.js";
import type { Logger } from "../logger.js";
import type { Claim, ClaimRequest, HeldLease, WorkerStore } from "../store/store.js";
import { FailureLog } from "../failureLog.js";
import { Completions } from "./completions.js";
import { JobRun, type JobRunOptions } from "./jobRun.js";
import { Rounds } from "./rounds.js";
import { withTimeout } from "./withTimeout.js";
import { giveBack, letFinish, WorkerRoutine } from "./workerRoutine.js";
import type { SupervisedJob } from "./supervisor/protocol.js";
import { SupervisedExecutor } from "./supervisor/supervisedExecutor.js";
import { supervisorPaths } from "./supervisor/supervisorConnection.js";

export type WorkerState = "starting" | "running" | "draining" | "stopped";

export interface WorkerOptions {
  store: WorkerStore;
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
   * Run jobs under the job supervisor (a process that outlives this one), which stops jobs
   * whose lease expires unrenewed and lets a restarted worker adopt its jobs. Off only where
   * the compiled supervisor is not at hand (in-process tests); `executor` then runs jobs.
   */
  supervise: boolean;
}

const KINDS: readonly JobKind[] = ["shell"];

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
  /** Registry beats, an operator's orders, timers, cancel checks, reaping. */
  private readonly routine: WorkerRoutine;
  private usedCpus = 0;
  private usedMemoryMb = 0;
  /** Claim rounds, one at a time: a wake-up during one asks for another. */
  private readonly claims = new Rounds(
    () => this.claimRound(),
    () => this.routine.settleDrain(),
  );
  /** Outcomes of the attempts, recorded in batches. */
  private readonly completions: Completions;
  private readonly executor: Executor;
  private readonly supervisor: SupervisedExecutor | null = null;

  constructor(private readonly options: WorkerOptions) {
    this.log = options.logger.child({ worker: options.name });
    this.claimFailures = new FailureLog(this.log, "claiming jobs");
    this.completions = new Completions(options.store);
    this.routine = new WorkerRoutine(
      { ...options, log: this.log, runs: { shell: true, handlers: [] } },
      {
        claimSoon: () => this.claimSoon(),
        heartbeat: () => this.heartbeatAll(),
        drain: () => this.drain(),
        holdsAny: () => this.runs.size > 0,
        claiming: () => this.claims.busy,
        holdsJob: (jobId) => [...this.runs.values()].some((run) => run.job.id === jobId),
        cancel: (lease) => this.runs.get(runKey(lease.jobId, lease.attempt))?.stop("cancel"),
      },
    );
    if (options.supervise) {
      mkdirSync(options.stateDir, { recursive: true, mode: 0o700 });
      this.supervisor = new SupervisedExecutor(supervisorPaths(options.stateDir), this.log);
    }
    this.executor = this.supervisor ?? options.executor ?? defaultExecutor;
  }

  get name(): string {
    return this.options.name;
  }

  get runningJobs(): number {
    return this.runs.size;
  }

  /** Resolves once an operator's drain has let every running job finish. */
  get drained(): Promise<void> {
    return this.routine.drained;
  }

  private get concurrency(): number {
    return this.routine.concurrency;
  }

  /** Adopts what its earlier life left running, then starts claiming. */
  async start(): Promise<void> {
    if (this.supervisor) await this.adopt(this.supervisor);
    await this.routine.register();
    // Stopped while starting: nothing more to start.
    if (this.state !== "starting") return;
    this.routine.start();
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
    // A claim on its way is answered first: what it brings is given back, not started.
    await this.claims.idle();
    await letFinish(
      graceMs,
      () => [...this.runs.values()].map((run) => run.finished),
      () => this.stopAllRuns(),
    );
    await this.routine.stop();
    this.supervisor?.close();
    this.setState("stopped");
  }

  /** Claims nothing more; `drained` resolves when the running jobs have finished. */
  private drain(): void {
    if (this.state === "running") this.setState("draining");
    this.log.info({ running: this.runs.size }, "draining: running jobs finish, nothing new starts");
  }

  /** Second signal: stop every running job now (they are released to pending). */
  stopAllRuns(): void {
    for (const run of this.runs.values()) run.stop("shutdown");
  }

  private setState(next: WorkerState): void {
    this.log.info({ from: this.state, to: next }, `worker ${next}`);
    this.state = next;
  }

  /** Starts a claim round, or asks the running one to go round again. */
  private claimSoon(): void {
    if (this.state === "running") this.claims.request();
  }

  private async claimRound(): Promise<void> {
    const { options } = this;
    while (this.state === "running" && this.runs.size < this.concurrency) {
      const request: ClaimRequest = {
        workerId: options.name,
        queues: options.queues,
        kinds: KINDS,
        freeCpus: options.cpus - this.usedCpus,
        freeMemoryMb: options.memoryMb === null ? null : options.memoryMb - this.usedMemoryMb,
        leaseTtlMs: options.leaseTtlMs,
      };
      let claims: Claim[];
      try {
        // Every free slot in one transaction where a batch takes exactly what claims one
        // after another would; elsewhere one job at a time, so that an older job another
        // claimer holds locked for a moment is not passed over by a whole batch.
        if (options.store.serialClaims) {
          claims = await options.store.claimBatch(request, this.concurrency - this.runs.size);
        } else {
          const claim = await options.store.claim(request);
          claims = claim ? [claim] : [];
        }
        this.claimFailures.succeeded();
      } catch (error) {
        this.claimFailures.failed(error);
        return;
      }
      if (claims.length === 0) return;
      // Answered after the worker began to stop or drain: never started, given back.
      if (this.state !== "running")
        return giveBack(this.options.store, this.log, this.options.name, claims);
      for (const claim of claims) this.startRun(claim);
    }
  }

  private startRun(claim: Claim, adopted?: JobRunOptions["adopted"]): void {
    const { options } = this;
    const { job } = claim;
    const memory = job.resources.memoryMb ?? 0;
    this.usedCpus += job.resources.cpus;
    this.usedMemoryMb += memory;
    this.log.info({ jobId: job.id, attempt: claim.lease.attempt }, "job claimed");
    const run = new JobRun({
      store: options.store,
      complete: (lease, outcome) => this.completions.complete(lease, outcome),
      executor: this.executor,
      logger: this.log,
      job,
      lease: claim.lease,
      workRoot: join(options.stateDir, "work"),
      killGraceMs: options.killGraceMs,
      leaseExpiresAt: claim.expiresAt,
      leaseTtlMs: options.leaseTtlMs,
      flushIntervalMs: options.flushIntervalMs,
      flushMaxEvents: options.flushMaxEvents,
      maxBufferedEvents: options.maxBufferedEvents,
      adopted,
    });
    const key = runKey(claim.lease.jobId, claim.lease.attempt);
    this.runs.set(key, run);
    void run.finished.finally(() => {
      // Released exactly once: a run finishes once, and only here gives capacity back.
      this.runs.delete(key);
      this.heartbeatFailures.delete(run);
      this.usedCpus -= job.resources.cpus;
      this.usedMemoryMb -= memory;
      this.claimSoon();
      this.routine.settleDrain();
    });
  }

  /** Renews the leases of every running attempt, in one batch. */
  private async heartbeatAll(): Promise<void> {
    const { options } = this;
    const runs = [...this.runs.values()];
    if (runs.length === 0) return;
    try {
      const answers = await withTimeout(
        options.store.heartbeatBatch(
          runs.map((run) => run.lease),
          options.leaseTtlMs,
        ),
        options.heartbeatIntervalMs,
        "the heartbeat got no answer",
      );
      runs.forEach((run, i) => {
        const answer = answers[i];
        this.heartbeatFailures.delete(run);
        if (!answer?.held) {
          run.stop("lease_lost", "the store refused the heartbeat: another attempt holds the job");
        } else {
          run.leaseRenewed(answer.expiresAt);
          if (answer.cancel) run.stop("cancel");
        }
      });
    } catch (error) {
      const jobs: string[] = [];
      const live = new Set(this.runs.values());
      for (const run of runs) {
        // A run that finished meanwhile is gone for good: nothing to count for it.
        if (!live.has(run)) continue;
        const failures = (this.heartbeatFailures.get(run) ?? 0) + 1;
        this.heartbeatFailures.set(run, failures);
        jobs.push(run.job.id);
        if (failures >= options.maxHeartbeatFailures) {
          run.stop(
            "heartbeat_failed",
            `${failures} consecutive heartbeats failed (last: ${(error as Error).message}); ` +
              "stopped before the lease could expire and the job be handed to another worker",
          );
        }
      }
      this.log.warn({ err: error, jobs }, "heartbeat failed");
    }
  }

  /**
   * Finds the jobs this worker's earlier life held. A job its supervisor still holds (alive,
   * the same process by pid and start time, or ended with its exit status kept) is adopted
   * if its lease is still ours. One the supervisor never saw was never started: it goes back
   * to pending. One that vanished with a dead supervisor is lost: failed or retried by
   * policy. Jobs the supervisor holds whose leases are gone are stopped and dropped.
   */
  private async adopt(supervisor: SupervisedExecutor): Promise<void> {
    const welcome = await supervisor.connect();
    const { connection } = welcome;
    const dropped = new Set(welcome.dropped);
    const supervised = new Map(welcome.jobs.map((job) => [job.key, job]));
    const held = await this.options.store.heldBy(this.options.name);
    for (const claim of held) {
      const key = runKey(claim.lease.jobId, claim.lease.attempt);
      const job = supervised.get(key);
      supervised.delete(key);
      if (job && !job.stoppedAtLeaseExpiry && isSameProcess(job)) {
        this.log.info(
          {
            jobId: claim.job.id,
            attempt: claim.lease.attempt,
            pid: job.pid,
            ended: job.status !== null,
          },
          "adopting a job from this worker's earlier life",
        );
        const execution = supervisor.adopt(connection, job, claim.stored);
        this.startRun(claim, { execution, stored: claim.stored, ended: job.status !== null });
      } else {
        if (job) supervisor.discard(connection, job);
        // Never started: the supervisor, up since before the claim, never saw it, and it is
        // not one whose lease ran out (those the supervisor drops, noting that they ran).
        const neverStarted =
          job === undefined &&
          !dropped.has(key) &&
          claim.expiresAt > Date.now() &&
          welcome.startedAt <= (claim.job.startedAt ?? 0);
        await this.giveUp(claim, job, neverStarted);
      }
    }
    for (const job of supervised.values()) {
      this.log.warn({ job: job.key }, "dropping a job whose lease this worker no longer holds");
      supervisor.discard(connection, job);
    }
    if (this.runs.size > 0) await this.heartbeatAll();
  }

  /** Settles a held job that cannot be adopted. */
  private async giveUp(
    claim: HeldLease,
    job: SupervisedJob | undefined,
    neverStarted: boolean,
  ): Promise<void> {
    const { store } = this.options;
    rmSync(join(this.options.stateDir, "work", `${claim.job.id}.${claim.lease.attempt}`), {
      recursive: true,
      force: true,
    });
    if (neverStarted) {
      this.log.info({ jobId: claim.job.id }, "job claimed before a restart but never started");
      await store.release(claim.lease, "the worker restarted before it started the job");
      return;
    }
    const message = job?.stoppedAtLeaseExpiry
      ? `worker ${this.options.name} restarted too late: the job's lease ran out unrenewed ` +
        "and its process was stopped"
      : `worker ${this.options.name} restarted and found the job's process gone ` +
        "(its supervisor had stopped too): its exit status is unknown";
    this.log.warn({ jobId: claim.job.id, attempt: claim.lease.attempt }, message);
    await store.complete(claim.lease, {
      state: "failed",
      exitCode: null,
      signal: null,
      failure: { reason: "worker_lost", message },
    });
  }
}

const defaultExecutor = new ShellExecutor();

function runKey(jobId: string, attempt: number): string {
  return `${jobId}#${attempt}`;
}

/**
 * The supervisor is the job's parent and the authority on it; the pid and start time only
 * guard against taking another process that got the same pid for ours. A leader that has
 * just exited (gone, or a zombie) while its output still drains is still our job.
 */
function isSameProcess(job: SupervisedJob): boolean {
  if (job.status !== null) return true;
  if (job.pid === null) return false;
  const stat = readProcStat(job.pid);
  return stat === null || stat.state === "Z" || stat.startTime === job.startTime;
}
