import type { Readable } from "node:stream";
import type { Job } from "../core/job.js";
import type { OutputOffsets } from "../core/logEvent.js";

/** What an executor needs to start one attempt. */
export interface ExecutionRequest {
  job: Job;
  /** Fresh directory of this attempt; the default working directory. */
  workDir: string;
  /** Full environment of the process. */
  env: Record<string, string>;
  /** Time between SIGTERM and SIGKILL when the attempt is stopped. */
  killGraceMs: number;
  /** When the attempt's lease runs out unless renewed. */
  leaseExpiresAt: number;
}

export interface ExitStatus {
  exitCode: number | null;
  /** Name of the signal that ended the process ("SIGKILL"), or null. */
  signal: string | null;
  /** Set when the process could not be started at all. */
  spawnError: string | null;
  /** Set when the process's fate is unknown (its supervisor died): why. */
  lost?: string;
}

/** A running attempt. */
export interface Execution {
  readonly pid: number | null;
  readonly stdout: Readable;
  readonly stderr: Readable;
  /** Settles once the process has ended and its output pipes are closed. */
  readonly done: Promise<ExitStatus>;
  /** Stops the attempt and everything it started: SIGTERM, then SIGKILL after the grace. */
  stop(): void;
  /** The lease now runs until `expiresAt` (for a supervisor that stops jobs at expiry). */
  leaseExtended?(expiresAt: number): void;
  /** Output up to these byte offsets is stored: it need not be kept for a replay. */
  acknowledge?(stored: OutputOffsets): void;
  /** Times reading the job's output was paused for backpressure (known once it ended). */
  readonly outputPauses?: number;
  /** The outcome is recorded: forget the attempt. */
  dispose?(): void;
}

export interface Executor {
  start(request: ExecutionRequest): Execution;
}
