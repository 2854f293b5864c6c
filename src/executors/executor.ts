import type { Readable } from "node:stream";
import type { Job } from "../core/job.js";

/** What an executor needs to start one attempt. */
export interface ExecutionRequest {
  job: Job;
  /** Fresh directory of this attempt; the default working directory. */
  workDir: string;
  /** Full environment of the process. */
  env: Record<string, string>;
  /** Time between SIGTERM and SIGKILL when the attempt is stopped. */
  killGraceMs: number;
}

export interface ExitStatus {
  exitCode: number | null;
  /** Name of the signal that ended the process ("SIGKILL"), or null. */
  signal: string | null;
  /** Set when the process could not be started at all. */
  spawnError: string | null;
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
}

export interface Executor {
  start(request: ExecutionRequest): Execution;
}
