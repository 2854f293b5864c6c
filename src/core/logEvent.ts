export const LOG_STREAMS = ["stdout", "stderr"] as const;
export type LogStream = (typeof LOG_STREAMS)[number];

/** A line of output as the worker captured it, before the store numbers it. */
export interface OutputLine {
  stream: LogStream;
  line: string;
  /** When the worker read it (epoch ms). */
  ts: number;
}

/** A stored line: numbered per job, in order, across attempts. */
export interface LogEvent extends OutputLine {
  seq: number;
  attempt: number;
}
