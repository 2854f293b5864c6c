import { availableParallelism } from "node:os";
import { formatDuration } from "../core/duration.js";
import type { Failure, Job } from "../core/job.js";
import type { OutputLine } from "../core/logEvent.js";
import type { AttemptOutcome } from "../core/outcome.js";
import { FailureLog } from "../failureLog.js";
import { GroupCommit } from "../groupCommit.js";
import type { Logger } from "../logger.js";
import type { Claim, Completion, CompletionAnswer, WorkerStore } from "../store/store.js";
import type { HandlerRunner, HandlerSettled } from "./handlerRunner.js";
import { JobStopped, type StopCause } from "./handlerTypes.js";
import { LoopWatch } from "./loopWatch.js";
import { Rounds } from "./rounds.js";
import { withTimeout } from "./withTimeout.js";
import { giveBack, letFinish, WorkerRoutine } from "./workerRoutine.js";

export interface HandlerWorkerOptions {
  store: WorkerStore;
  runner: HandlerRunner;
  logger: Logger;
  name: string;
  /** null: every queue. */
  queues: readonly string[] | null;
  concurrency: number;
  /** CPUs handler jobs may ask for in all (they ask for none unless they say). */
  cpus?: number;
  leaseTtlMs: number;
  heartbeatIntervalMs: number;
  maxHeartbeatFailures: number;
  /** How long a stopped handler has to return before it is abandoned (thread: terminated). */
  killGraceMs: number;
  pollIntervalMs: number;
  /** Output of a long run is stored at least this often. */
  flushIntervalMs: number;
  /** Also turn expired leases into retries or failures (off when a server does it). */
  reap: boolean;
  reapIntervalMs: number;
  /** Most jobs claimed, or outcomes recorded, in one round trip to the store. */
  batchSize: number;
  onEvent?: (event: HandlerEvent) => void;
}

/** What happens to jobs on a handler worker, for the SDK's typed events. */
export type HandlerEvent =
  | { type: "started"; job: Job; attempt: number }
  | { type: "succeeded"; job: Job; attempt: number; result: unknown; durationMs: number }
  | {
      type: "failed";
      job: Job;
      attempt: number;
      failure: Failure;
      /** The job goes back in line for another attempt. */
      retrying: boolean;
      durationMs: number;
    }
  | { type: "cancelled"; job: Job; attempt: number }
  /** Given back to pending, attempt not spent: the worker shut down before it finished. */
  | { type: "released"; job: Job; attempt: number }
  /** Another attempt holds the job now; nothing this run does is recorded. */
  | { type: "leaseLost"; job: Job; attempt: number; message: string }
  /** The event loop was blocked: heartbeats and everything else waited. */
  | { type: "blocked"; ms: number; message: string }
  | { type: "error"; error: Error; message: string };

/** One attempt of one handler job on this worker. */
interface Run {
  claim: Claim;
  key: string;
  /** Made when the handler first looks at its signal, or when the run is stopped. */
  controller: AbortController | null;
  stop: JobStopped | null;
  /** Ends the wait for the handler: set while it runs. */
  abandon: ((settled: HandlerSettled) => void) | null;
  abandonTimer: NodeJS.Timeout | null;
  startedAt: number;
  lines: OutputLine[];
  /** Appends of this run's output, one at a time, in order; false once refused. */
  appending: Promise<boolean>;
  flushTimer: NodeJS.Timeout | null;
  timeoutTimer: NodeJS.Timeout | null;
  /** Settles once the outcome is recorded, refused, or the run abandoned. */
  finished: Promise<void>;
}

const BLOCK_REPORT_MS = 1_000;
const COMPLETE_RETRY_MAX_MS = 5_000;

/**
 * Runs handler jobs: claims them in batches as slots free up, runs each handler with a
 * context whose signal aborts on cancel, timeout, lease loss and shutdown, renews all its
 * leases in one call per heartbeat, and records outcomes in batches. Every write is fenced
 * by the attempt, so a run whose lease was lost changes nothing.
 */
export class HandlerWorker {
  private state: "starting" | "running" | "draining" | "stopped" = "starting";
  /** Leases this worker holds: running handlers and outcomes not yet recorded. */
  private readonly held = new Map<string, Run>();
  /** Handlers running now (their slots). */
  private active = 0;
  /** Whether claiming stopped until outcomes are recorded (see `claimRound`). */
  private outcomesBehind = false;
  /**
   * Whether the store has nothing more this worker could run, as far as it knows: its last
   * claim came back short with every CPU free and took no CPUs, and no wake-up (the store's
   * news, the poll, an operator's order) came after that claim was sent. A slot that frees
   * then finds nothing either: no claim is made for it.
   */
  private dry = false;
  /** Wake-ups so far; a claim's answer sets `dry` only if none came while it was on its way. */
  private wakeUps = 0;
  private usedCpus = 0;
  private readonly cpus: number;
  /** Claim rounds, one at a time: a wake-up during one asks for another. */
  private readonly claims = new Rounds(
    () => this.claimRound(),
    () => this.routine.settleDrain(),
  );
  private heartbeatFailures = 0;
  private readonly completions: GroupCommit<Completion, CompletionAnswer | null>;
  /** Registry beats, an operator's orders, timers, cancel checks, reaping. */
  private readonly routine: WorkerRoutine;
  private readonly loop: LoopWatch;
  private readonly log: Logger;
  private readonly claimFailures: FailureLog;
  private readonly completeFailures: FailureLog;

  constructor(private readonly options: HandlerWorkerOptions) {
    this.log = options.logger.child({ worker: options.name });
    this.cpus = options.cpus ?? availableParallelism();
    this.claimFailures = new FailureLog(this.log, "claiming jobs");
    this.completeFailures = new FailureLog(this.log, "recording outcomes");
    // Two batches of outcomes in flight: one is written while the next gathers and goes
    // out on a connection of its own, rather than waiting for the first to commit.
    this.completions = new GroupCommit((items) => this.writeCompletions(items), {
      max: options.batchSize,
      writers: 2,
    });
    this.routine = new WorkerRoutine(
      {
        ...options,
        log: this.log,
        runs: { shell: false, handlers: [...options.runner.names] },
        cpus: this.cpus,
        memoryMb: null,
      },
      {
        claimSoon: () => {
          this.wakeUps++;
          this.dry = false;
          this.claimSoon();
        },
        heartbeat: () => this.heartbeatAll(),
        drain: () => {
          if (this.state === "running") this.state = "draining";
          this.log.info({ running: this.active }, "draining: running handlers finish");
        },
        holdsAny: () => this.held.size > 0,
        claiming: () => this.claims.busy,
        holdsJob: (jobId) => this.holdsJob(jobId),
        cancel: (lease) => {
          const run = this.held.get(`${lease.jobId}#${lease.attempt}`);
          if (run) this.stopRun(run, "cancel", "cancelled by request");
        },
      },
    );
    this.loop = new LoopWatch(BLOCK_REPORT_MS, (ms) => this.onLoopBlocked(ms));
  }

  get name(): string {
    return this.options.name;
  }

  /** Handlers running now. */
  get running(): number {
    return this.active;
  }

  /** Resolves once an operator's drain has let every held job finish. */
  get drained(): Promise<void> {
    return this.routine.drained;
  }

  private get concurrency(): number {
    return this.routine.concurrency;
  }

  /** Settles what an earlier life under this name left held, registers, starts claiming. */
  async start(): Promise<void> {
    const { options } = this;
    await this.settleEarlierLife();
    await this.routine.register();
    // Stopped while starting: nothing more to start.
    if (this.state !== "starting") return;
    this.routine.start();
    this.loop.start();
    this.state = "running";
    this.log.info(
      { handlers: options.runner.names, concurrency: this.concurrency },
      "handler worker running",
    );
    this.claimSoon();
  }

  /**
   * Graceful stop, as `baton worker`'s: claims nothing more, lets running handlers finish for
   * up to `graceMs`, then aborts the rest (their signal says "shutdown") and gives their jobs
   * back to pending without spending an attempt.
   */
  async stop(graceMs: number): Promise<void> {
    if (this.state === "stopped") return;
    this.state = "draining";
    // A claim on its way is answered first: what it brings is given back, not started.
    await this.claims.idle();
    await letFinish(
      graceMs,
      () => [...this.held.values()].map((run) => run.finished),
      () => {
        for (const run of this.held.values()) {
          this.stopRun(run, "shutdown", "the worker is shutting down");
        }
      },
    );
    this.loop.stop();
    this.routine.quiet();
    await this.options.runner.close();
    await this.routine.stop();
    this.state = "stopped";
    this.log.info("handler worker stopped");
  }

  /** Its handlers died with the earlier process: their attempts are lost, retried by policy. */
  private async settleEarlierLife(): Promise<void> {
    const held = await this.options.store.heldBy(this.options.name);
    if (held.length === 0) return;
    const message =
      `worker ${this.options.name} restarted: the handler's run ended with its earlier ` +
      "process, and its outcome is unknown";
    this.log.warn({ jobs: held.map((claim) => claim.job.id) }, message);
    await this.options.store.completeBatch(
      held.map((claim) => ({
        lease: claim.lease,
        outcome: {
          state: "failed",
          exitCode: null,
          signal: null,
          failure: { reason: "worker_lost", message },
        },
      })),
    );
  }

  private holdsJob(jobId: string): boolean {
    for (const run of this.held.values()) if (run.claim.job.id === jobId) return true;
    return false;
  }

  /**
   * A handler's slot is free once it returns, before its outcome is stored. When the store
   * falls behind, up to twice `concurrency` outcomes may wait to be written (a batch being
   * written while the next one runs); past that, nothing more is claimed until they are:
   * jobs run no faster than they are recorded, and what a crash would run again, and what
   * every heartbeat renews, stays bounded.
   */
  private get outcomesBacklogged(): boolean {
    return this.held.size - this.active >= 2 * this.concurrency;
  }

  private claimSoon(): void {
    if (this.state === "running") this.claims.request();
  }

  /**
   * Claims while slots are free, a batch at a time. When a full batch leaves slots for
   * another, that one is asked for before this one's handlers start, so that the store
   * works on the next claim while this worker starts the last.
   */
  private async claimRound(): Promise<void> {
    let next = this.claimUpTo(this.concurrency - this.active, this.cpus - this.usedCpus);
    while (next) {
      const { claims, asked } = await next;
      next = null;
      // Answered after the worker began to stop or drain: never started, given back.
      if (this.state !== "running")
        return giveBack(this.options.store, this.log, this.options.name, claims);
      const full = claims.length === asked;
      if (full && !this.outcomesBacklogged) {
        const inHand = claims.reduce((sum, claim) => sum + claim.job.resources.cpus, 0);
        next = this.claimUpTo(
          this.concurrency - this.active - claims.length,
          this.cpus - this.usedCpus - inHand,
        );
      }
      for (const claim of claims) this.startRun(claim);
      if (!full) return;
      // Handlers that return at once free their slots in microtasks, and an embedded store
      // claims synchronously: without a turn of the event loop here, a long backlog would be
      // claimed and run with no timer (heartbeats), I/O or completion write in between.
      await new Promise((resolve) => setImmediate(resolve));
      // Slots freed while this batch started: ask again.
      next ??= this.claimUpTo(this.concurrency - this.active, this.cpus - this.usedCpus);
    }
  }

  /**
   * One claim of at most `slots` jobs (and one batch) within `freeCpus`, if the worker is
   * running and its outcomes are not backlogged; null when it asks for nothing. A failed
   * claim is logged and answers no claims.
   */
  private claimUpTo(
    slots: number,
    freeCpus: number,
  ): Promise<{ claims: Claim[]; asked: number }> | null {
    const { options } = this;
    if (this.state !== "running") return null;
    if (this.outcomesBacklogged) {
      this.outcomesBehind = true;
      return null;
    }
    const asked = Math.min(slots, options.batchSize);
    if (asked <= 0) return null;
    const request = {
      workerId: options.name,
      queues: options.queues,
      kinds: ["handler" as const],
      handlers: options.runner.names,
      freeCpus,
      freeMemoryMb: null,
      leaseTtlMs: options.leaseTtlMs,
    };
    const wakeUps = this.wakeUps;
    return options.store.claimBatch(request, asked).then(
      (claims) => {
        this.claimFailures.succeeded();
        this.dry =
          claims.length < asked &&
          freeCpus === this.cpus &&
          claims.every((claim) => claim.job.resources.cpus === 0) &&
          this.wakeUps === wakeUps;
        return { claims, asked };
      },
      (error: unknown) => {
        this.dry = false;
        this.claimFailures.failed(error);
        return { claims: [], asked };
      },
    );
  }

  private startRun(claim: Claim): void {
    const { job, lease } = claim;
    const run: Run = {
      claim,
      key: `${lease.jobId}#${lease.attempt}`,
      controller: null,
      stop: null,
      abandon: null,
      abandonTimer: null,
      startedAt: Date.now(),
      lines: [],
      appending: Promise.resolve(true),
      flushTimer: null,
      timeoutTimer: null,
      finished: Promise.resolve(),
    };
    this.held.set(run.key, run);
    this.active++;
    this.usedCpus += job.resources.cpus;
    if (job.timeoutMs !== null) {
      const ms = job.timeoutMs;
      run.timeoutTimer = setTimeout(
        () => this.stopRun(run, "timeout", `timed out after ${formatDuration(ms)}`),
        ms,
      );
    }
    this.emit({ type: "started", job, attempt: lease.attempt });
    run.finished = this.execute(run).catch((error: unknown) => {
      this.log.error({ err: error, jobId: job.id }, "handler run failed unexpectedly");
    });
  }

  private async execute(run: Run): Promise<void> {
    const { job, lease } = run.claim;
    const settled = await this.settle(run);
    if (run.timeoutTimer) clearTimeout(run.timeoutTimer);
    this.active--;
    this.usedCpus -= job.resources.cpus;
    // A handler that blocked the loop is still listed as running when the block is noticed.
    this.loop.check();
    this.loop.running.delete(run.key);
    if (!this.dry) this.claimSoon();
    try {
      const stored = await this.flushOutput(run);
      if (!stored || run.stop?.stopCause === "lease_lost") return this.lost(run);
      if (!settled.ok && run.stop?.stopCause === "shutdown") {
        const answer = await this.options.store.release(lease, run.stop.message);
        if (answer.applied) this.emit({ type: "released", job, attempt: lease.attempt });
        else this.lost(run);
        return;
      }
      const outcome = outcomeOf(settled, run.stop);
      const answer = await this.record(run, outcome);
      if (!answer?.applied) return this.lost(run);
      const durationMs = Date.now() - run.startedAt;
      if (outcome.state === "succeeded") {
        this.emit({
          type: "succeeded",
          job,
          attempt: lease.attempt,
          result: settled.ok ? settled.result : null,
          durationMs,
        });
      } else if (outcome.state === "cancelled" || answer.state === "cancelled") {
        this.emit({ type: "cancelled", job, attempt: lease.attempt });
      } else {
        this.emit({
          type: "failed",
          job,
          attempt: lease.attempt,
          failure: outcome.failure,
          retrying: answer.state === "pending",
          durationMs,
        });
      }
    } finally {
      this.held.delete(run.key);
      this.routine.settleDrain();
      if (this.outcomesBehind && !this.outcomesBacklogged) {
        this.outcomesBehind = false;
        this.claimSoon();
      }
    }
  }

  /**
   * The handler's own ending, or, once it was stopped, at most `killGraceMs` later: a
   * handler that ignores its signal in this event loop cannot be forced, only abandoned.
   */
  private async settle(run: Run): Promise<HandlerSettled> {
    const { job, lease } = run.claim;
    this.loop.running.set(run.key, `${job.handler ?? "?"} (job ${job.id})`);
    const handled = this.options.runner.run({
      job,
      attempt: lease.attempt,
      get signal() {
        return signalOf(run);
      },
      output: (line) => this.output(run, line),
    });
    try {
      return await new Promise<HandlerSettled>((resolve) => {
        run.abandon = resolve;
        void handled.then(resolve);
      });
    } finally {
      run.abandon = null;
      if (run.abandonTimer) clearTimeout(run.abandonTimer);
    }
  }

  private stopRun(run: Run, cause: StopCause, message: string): void {
    if (run.stop) return;
    run.stop = new JobStopped(cause, message);
    run.controller?.abort(run.stop);
    if (!run.abandon) return;
    const abandon = run.abandon;
    run.abandonTimer = setTimeout(
      () =>
        abandon({
          ok: false,
          message:
            `${message}; the handler did not return within ` +
            `${this.options.killGraceMs} ms of being stopped and was abandoned`,
          final: false,
        }),
      // Past the thread runner's own hard stop, which then answers first.
      this.options.killGraceMs + 250,
    );
  }

  private lost(run: Run): void {
    const { job, lease } = run.claim;
    const message =
      run.stop?.stopCause === "lease_lost" ? run.stop.message : this.leaseLostMessage("write");
    this.log.warn({ jobId: job.id, attempt: lease.attempt }, message);
    this.emit({ type: "leaseLost", job, attempt: lease.attempt, message });
  }

  private output(run: Run, line: OutputLine): void {
    if (!this.held.has(run.key)) return;
    run.lines.push(line);
    run.flushTimer ??= setTimeout(() => {
      run.flushTimer = null;
      void this.flushOutput(run);
    }, this.options.flushIntervalMs);
  }

  /** Stores the run's buffered output; false once the store refused it (lease lost). */
  private flushOutput(run: Run): Promise<boolean> {
    if (run.flushTimer) {
      clearTimeout(run.flushTimer);
      run.flushTimer = null;
    }
    run.appending = run.appending.then(async (ok) => {
      if (!ok || run.lines.length === 0) return ok;
      const lines = run.lines.splice(0);
      try {
        const answer = await this.options.store.appendLogs(run.claim.lease, lines);
        return answer.applied;
      } catch (error) {
        this.log.warn({ err: error, jobId: run.claim.job.id }, "could not store handler output");
        run.lines.unshift(...lines);
        return true;
      }
    });
    return run.appending;
  }

  /** Queues the outcome for the next batch (group commit); resolves with the store's answer. */
  private record(run: Run, outcome: AttemptOutcome): Promise<CompletionAnswer | null> {
    return this.completions.call({ lease: run.claim.lease, outcome });
  }

  /**
   * Records a batch of outcomes in one round trip. A batch that fails is tried again, with a
   * growing pause, until the store answers (an attempt whose lease ran out meanwhile is then
   * refused, as it should be); outcomes that arrive meanwhile make the next batch.
   */
  private async writeCompletions(items: Completion[]): Promise<Array<CompletionAnswer | null>> {
    for (let pause = 50; ; pause = Math.min(COMPLETE_RETRY_MAX_MS, pause * 2)) {
      try {
        const answers = await this.options.store.completeBatch(items);
        this.completeFailures.succeeded();
        return answers;
      } catch (error) {
        this.completeFailures.failed(error);
        if (this.state === "stopped") return items.map(() => null);
        await new Promise((resolve) => setTimeout(resolve, pause));
      }
    }
  }

  private async heartbeatAll(): Promise<void> {
    const runs = [...this.held.values()];
    if (runs.length === 0) return;
    const { options } = this;
    try {
      const answers = await withTimeout(
        options.store.heartbeatBatch(
          runs.map((run) => run.claim.lease),
          options.leaseTtlMs,
        ),
        options.heartbeatIntervalMs,
        "the heartbeat got no answer",
      );
      this.heartbeatFailures = 0;
      runs.forEach((run, i) => {
        const answer = answers[i];
        if (!answer?.held) this.stopRun(run, "lease_lost", this.leaseLostMessage("heartbeat"));
        else if (answer.cancel) this.stopRun(run, "cancel", "cancelled by request");
      });
    } catch (error) {
      this.heartbeatFailures++;
      this.log.warn({ err: error, failures: this.heartbeatFailures }, "heartbeat failed");
      if (this.heartbeatFailures >= options.maxHeartbeatFailures) {
        const message =
          `${this.heartbeatFailures} consecutive heartbeats failed (last: ` +
          `${(error as Error).message}); stopped before the lease could expire and the job ` +
          "be handed to another worker";
        for (const run of runs) this.stopRun(run, "heartbeat_failed", message);
      }
    }
  }

  /** Why the store refused a heartbeat or write, naming a blocked event loop if there was one. */
  private leaseLostMessage(refused: "heartbeat" | "write"): string {
    this.loop.check();
    const block = this.loop.lastBlock;
    if (block && Date.now() - block.endedAt < this.options.leaseTtlMs) {
      return (
        `lease lost: the event loop was blocked for ${formatDuration(block.ms)} ` +
        `(running: ${block.running.join(", ") || "no handler"}), so no heartbeat could renew ` +
        `the ${formatDuration(this.options.leaseTtlMs)} lease and another worker may have ` +
        'taken the job; run CPU-bound handlers with isolation: "thread", or let them await ' +
        "between steps"
      );
    }
    return (
      `lease lost: the store refused the ${refused} because another attempt holds the job ` +
      "(the lease expired before a heartbeat reached the store)"
    );
  }

  private onLoopBlocked(ms: number): void {
    const block = this.loop.lastBlock;
    const running = block?.running.join(", ") || "no handler";
    const message =
      `the event loop was blocked for ${formatDuration(ms)} (running: ${running}); heartbeats ` +
      `waited meanwhile, and a block longer than the lease (${formatDuration(
        this.options.leaseTtlMs,
      )}) loses the job; run CPU-bound handlers with isolation: "thread"`;
    this.log.warn({ blockedMs: ms }, message);
    this.emit({ type: "blocked", ms, message });
    // Renew at once: the interval's own heartbeat may be most of an interval away.
    void this.heartbeatAll();
  }

  private emit(event: HandlerEvent): void {
    try {
      this.options.onEvent?.(event);
    } catch (error) {
      this.log.error({ err: error, event: event.type }, "a worker event listener threw");
    }
  }
}

/**
 * The run's abort signal, made on first use: most handlers never look at it, and making one
 * for every job costs more than the rest of starting it. Made after a stop, it is aborted.
 */
function signalOf(run: Run): AbortSignal {
  if (!run.controller) {
    run.controller = new AbortController();
    if (run.stop) run.controller.abort(run.stop);
  }
  return run.controller.signal;
}

/** The attempt's outcome: the handler's own, unless it was stopped and did not succeed. */
function outcomeOf(settled: HandlerSettled, stop: JobStopped | null): AttemptOutcome {
  if (settled.ok)
    return { state: "succeeded", exitCode: null, signal: null, result: settled.result };
  if (stop?.stopCause === "cancel") return { state: "cancelled", exitCode: null, signal: null };
  if (stop?.stopCause === "timeout" || stop?.stopCause === "heartbeat_failed") {
    const message = settled.message.startsWith(stop.message)
      ? settled.message
      : `${stop.message} (the handler then threw: ${settled.message})`;
    return {
      state: "failed",
      exitCode: null,
      signal: null,
      failure: { reason: stop.stopCause, message },
    };
  }
  return {
    state: "failed",
    exitCode: null,
    signal: null,
    failure: { reason: "handler_error", message: settled.message },
    final: settled.final,
  };
}
