import { mkdirSync, rmdirSync, rmSync, statSync } from "node:fs";
import { join } from "node:path";
import { formatDuration } from "../core/duration.js";
import type { Job } from "../core/job.js";
import {
  NO_OUTPUT,
  type OutputStream,
  parseOutputLine,
  type OutputLine,
  type OutputOffsets,
} from "../core/logEvent.js";
import type { AttemptOutcome } from "../core/outcome.js";
import type { Execution, Executor, ExitStatus } from "../executors/executor.js";
import type { Logger } from "../logger.js";
import type { CompletionAnswer, Lease, WorkerStore } from "../store/store.js";
import { LineSplitter } from "./lineSplitter.js";
import { LeaseLost, LogBuffer } from "./logBuffer.js";

const RECORD_ATTEMPTS = 10;

/** Why the worker stopped an attempt before it ended by itself. */
export type StopReason = "cancel" | "timeout" | "lease_lost" | "heartbeat_failed" | "shutdown";

export interface JobRunOptions {
  store: WorkerStore;
  /** Records the attempt's outcome (the worker batches them); settles once it is durable. */
  complete: (lease: Lease, outcome: AttemptOutcome) => Promise<CompletionAnswer>;
  executor: Executor;
  logger: Logger;
  job: Job;
  lease: Lease;
  /** Directory under which this attempt gets a fresh directory of its own. */
  workRoot: string;
  killGraceMs: number;
  /** When the claim's lease runs out unless renewed. */
  leaseExpiresAt: number;
  /** Output that cannot be stored for this long stops the job, as failed heartbeats do. */
  leaseTtlMs: number;
  flushIntervalMs: number;
  flushMaxEvents: number;
  maxBufferedEvents: number;
  /**
   * An attempt already running (adopted after a restart), how much of its output is stored,
   * and whether its process had already ended (its own result then stands, whatever stops).
   */
  adopted?: { execution: Execution; stored: OutputOffsets; ended: boolean };
}

/** A line with the offset just past it in its stream, to acknowledge once it is stored. */
interface CapturedLine extends OutputLine {
  end: number;
}

/** One attempt of one job on this worker, from spawn to the recorded outcome. */
export class JobRun {
  readonly job: Job;
  readonly lease: Lease;
  /** Settles once the outcome is recorded (or known to be someone else's to record). */
  readonly finished: Promise<void>;
  private stopReason: StopReason | null = null;
  private stopDetail = "";
  private stopExecution: () => void = () => {};
  /** Set once the process has ended: from then on its own result stands. */
  private exited = false;
  private leaseGuard: NodeJS.Timeout | null = null;
  private execution: Execution | null = null;
  private expiresAt: number;
  private readonly log: Logger;

  constructor(private readonly options: JobRunOptions) {
    this.job = options.job;
    this.lease = options.lease;
    this.log = options.logger.child({ jobId: this.job.id, attempt: this.lease.attempt });
    this.expiresAt = options.leaseExpiresAt;
    this.exited = options.adopted?.ended ?? false;
    this.leaseRenewed(options.leaseExpiresAt);
    this.finished = this.run().finally(() => this.clearLeaseGuard());
  }

  /**
   * Stops the attempt; the first reason given is the one recorded. Once the process has
   * ended, a stop changes nothing: a job that finished is not re-labelled a timeout, a
   * cancel or a shutdown by a signal that arrived while its last output was written.
   */
  stop(reason: StopReason, detail = ""): void {
    if (this.stopReason || this.exited) return;
    this.stopReason = reason;
    this.stopDetail = detail;
    this.log.info({ reason, detail }, "stopping job");
    this.stopExecution();
  }

  /**
   * The lease now runs until `expiresAt`. Unless renewed again, the job is stopped early
   * enough that it is dead (after the kill grace) before the lease expires and the reaper
   * can hand the job to another worker: the process never outlives the lease.
   */
  leaseRenewed(expiresAt: number): void {
    this.clearLeaseGuard();
    this.expiresAt = expiresAt;
    this.execution?.leaseExtended?.(expiresAt);
    const { killGraceMs } = this.options;
    const margin = Math.min(1_000, Math.max(50, (expiresAt - Date.now()) / 10));
    const stopAt = expiresAt - killGraceMs - margin;
    this.leaseGuard = setTimeout(
      () =>
        this.stop(
          "heartbeat_failed",
          `no heartbeat succeeded and the lease expires at ${new Date(expiresAt).toISOString()}; ` +
            "stopped so that it cannot run beside a new attempt (is the store reachable?)",
        ),
      Math.max(0, stopAt - Date.now()),
    );
  }

  get leaseExpiresAt(): number {
    return this.expiresAt;
  }

  private clearLeaseGuard(): void {
    if (this.leaseGuard) clearTimeout(this.leaseGuard);
    this.leaseGuard = null;
  }

  private async run(): Promise<void> {
    const { job } = this;
    const workDir = join(this.options.workRoot, `${job.id}.${this.lease.attempt}`);
    try {
      const status = await this.execute(workDir).finally(() => {
        // Before the outcome is recorded: a finished job has left nothing behind.
        this.removeWorkDir(workDir);
      });
      await this.record(status);
    } catch (error) {
      if (error instanceof LeaseLost) {
        this.log.warn("lease lost while the job ran: its outcome is not recorded by this worker");
      } else {
        this.log.error({ err: error }, "job run failed");
      }
    } finally {
      this.execution?.dispose?.();
    }
  }

  /** Starts the job's process, or takes over the adopted one. */
  private startExecution(workDir: string): Execution | ExitStatus {
    const { job, lease, options } = this;
    if (options.adopted) return options.adopted.execution;
    try {
      mkdirSync(workDir, { recursive: true });
    } catch (error) {
      const message = (error as Error).message;
      return {
        exitCode: null,
        signal: null,
        spawnError: `could not create ${workDir}: ${message}`,
      };
    }
    if (job.cwd !== null && !isDirectory(job.cwd)) {
      return {
        exitCode: null,
        signal: null,
        spawnError: `working directory ${job.cwd} does not exist on worker ${lease.workerId}`,
      };
    }
    try {
      return options.executor.start({
        job,
        workDir,
        killGraceMs: options.killGraceMs,
        leaseExpiresAt: this.expiresAt,
        env: {
          ...stringEnv(process.env),
          ...job.env,
          BATON_JOB_ID: job.id,
          BATON_ATTEMPT: String(lease.attempt),
          BATON_WORKDIR: workDir,
        },
      });
    } catch (error) {
      return {
        exitCode: null,
        signal: null,
        spawnError: `could not start the job: ${String(error)}`,
      };
    }
  }

  /** Spawns the job and pumps its output into the store until it ends. */
  private async execute(workDir: string): Promise<ExitStatus> {
    const { job, lease, options } = this;
    const started = this.startExecution(workDir);
    if (!("stdout" in started)) return started;
    const execution = started;
    this.execution = execution;
    this.stopExecution = () => execution.stop();
    if (this.stopReason) execution.stop();
    // Counted from the attempt's start, which for an adopted job was in the worker's last life.
    const timeout =
      job.timeoutMs === null
        ? null
        : setTimeout(
            () => this.stop("timeout", `timed out after ${formatDuration(job.timeoutMs ?? 0)}`),
            Math.max(0, (job.startedAt ?? Date.now()) + job.timeoutMs - Date.now()),
          );
    const stored: OutputOffsets = { ...(options.adopted?.stored ?? NO_OUTPUT) };
    let failingSince: number | null = null;
    const streams = [execution.stdout, execution.stderr];
    const buffer = new LogBuffer<CapturedLine>({
      flushIntervalMs: options.flushIntervalMs,
      flushMaxEvents: options.flushMaxEvents,
      maxBufferedEvents: options.maxBufferedEvents,
      write: async (lines) => {
        const reached = { ...stored };
        for (const { stream, end } of lines) {
          if (stream !== "system") reached[stream] = Math.max(reached[stream], end);
        }
        const answer = await options.store.appendLogs(lease, lines, reached);
        if (!answer.applied) throw new LeaseLost();
        failingSince = null;
        Object.assign(stored, reached);
        execution.acknowledge?.(stored);
      },
      onPressure: (full) => {
        for (const stream of streams) {
          if (full) stream.pause();
          else stream.resume();
        }
      },
      onLeaseLost: () =>
        this.stop("lease_lost", "the store refused the job's output: another attempt holds it"),
      onWriteError: (error, attempt) => {
        const now = Date.now();
        failingSince ??= now;
        if (now - failingSince < options.leaseTtlMs) {
          this.log.warn({ err: error, attempt }, "writing job output failed; retrying");
          return;
        }
        this.stop(
          "heartbeat_failed",
          `the job's output could not be stored for ${formatDuration(now - failingSince)} ` +
            `(last: ${(error as Error).message}); stopped, as for failed heartbeats`,
        );
        buffer.abandon();
      },
    });
    const pump = (stream: NodeJS.ReadableStream, name: OutputStream) =>
      new Promise<void>((resolve) => {
        // One timestamp per chunk read: the lines of a chunk arrived together.
        let ts = 0;
        const splitter = new LineSplitter((line, end, cut) => {
          // Plain lines, the bulk of any output, take the short way.
          if (cut || !line.startsWith("::")) {
            buffer.push({ stream: name, line, ts, kind: "line", data: null, cut, end });
            return;
          }
          for (const event of parseOutputLine(name, line, ts)) buffer.push({ ...event, end });
        }, stored[name]);
        stream.on("data", (chunk: Buffer) => {
          ts = Date.now();
          splitter.write(chunk);
        });
        stream.once("close", () => {
          splitter.end();
          resolve();
        });
      });
    const pumped = Promise.all([
      pump(execution.stdout, "stdout"),
      pump(execution.stderr, "stderr"),
    ]);
    const status = await execution.done;
    this.exited = true;
    if (timeout) clearTimeout(timeout);
    await pumped;
    await buffer.drain(); // rejects with LeaseLost when the store refused our output
    const pauses = buffer.pauses + (execution.outputPauses ?? 0);
    if (pauses > 0) {
      this.log.info(
        { outputPauses: pauses },
        "output backpressure: reading the job's output paused while the store caught up",
      );
    }
    return status;
  }

  /** Reports the outcome: completion, or a release back to pending on shutdown. */
  private async record(status: ExitStatus): Promise<void> {
    const { store, complete } = this.options;
    if (this.stopReason === "lease_lost") throw new LeaseLost();
    if (this.stopReason === "shutdown") {
      const answer = await this.retrying("releasing the job", () =>
        store.release(this.lease, "worker shut down before the job finished"),
      );
      this.log.info({ applied: answer.applied }, "job released to pending for another worker");
      return;
    }
    const outcome = this.outcome(status);
    if (status.lost) this.log.error({ reason: status.lost }, "job lost");
    const answer = await this.retrying("recording the outcome", () =>
      complete(this.lease, outcome),
    );
    if (!answer.applied) throw new LeaseLost();
    this.log.info(
      { state: answer.state, exitCode: status.exitCode, signal: status.signal },
      "job attempt finished",
    );
  }

  /** Retries a store write that failed for a transient reason, with backoff. */
  private async retrying<T>(what: string, write: () => Promise<T>): Promise<T> {
    for (let attempt = 1; ; attempt++) {
      try {
        return await write();
      } catch (error) {
        if (attempt >= RECORD_ATTEMPTS) throw error;
        this.log.warn({ err: error, attempt }, `${what} failed; retrying`);
        await new Promise((resolve) => setTimeout(resolve, Math.min(5_000, 100 * 2 ** attempt)));
      }
    }
  }

  private outcome(status: ExitStatus): AttemptOutcome {
    const { exitCode, signal } = status;
    if (status.lost !== undefined) {
      return {
        state: "failed",
        exitCode,
        signal,
        failure: { reason: "worker_lost", message: status.lost },
      };
    }
    if (status.spawnError !== null) {
      return {
        state: "failed",
        exitCode,
        signal,
        failure: { reason: "spawn_error", message: status.spawnError },
      };
    }
    switch (this.stopReason) {
      case "cancel":
        return { state: "cancelled", exitCode, signal };
      case "timeout":
        return {
          state: "failed",
          exitCode,
          signal,
          failure: { reason: "timeout", message: this.stopDetail },
        };
      case "heartbeat_failed":
        return {
          state: "failed",
          exitCode,
          signal,
          failure: { reason: "heartbeat_failed", message: this.stopDetail },
        };
      default:
        break;
    }
    if (exitCode === 0) return { state: "succeeded", exitCode, signal: null };
    const message = signal !== null ? `killed by ${signal}` : `exited with code ${exitCode}`;
    return { state: "failed", exitCode, signal, failure: { reason: "exit_code", message } };
  }

  private removeWorkDir(workDir: string): void {
    try {
      // Most jobs leave their directory empty: one rmdir, where a recursive removal walks
      // it first (8 % of a busy worker's time with thousands of short jobs).
      rmdirSync(workDir);
      return;
    } catch {
      // Not empty, or gone: the recursive removal below handles both.
    }
    try {
      rmSync(workDir, { recursive: true, force: true, maxRetries: 3 });
    } catch (error) {
      this.log.error({ err: error, path: workDir }, `could not remove job directory ${workDir}`);
    }
  }
}

function isDirectory(path: string): boolean {
  try {
    return statSync(path).isDirectory();
  } catch {
    return false;
  }
}

function stringEnv(env: NodeJS.ProcessEnv): Record<string, string> {
  const result: Record<string, string> = {};
  for (const [key, value] of Object.entries(env)) if (value !== undefined) result[key] = value;
  return result;
}
