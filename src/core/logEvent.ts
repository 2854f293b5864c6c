/** Where an event came from: the job's two pipes, or Baton itself (warnings, markers). */
export const LOG_STREAMS = ["stdout", "stderr", "system"] as const;
export type LogStream = (typeof LOG_STREAMS)[number];
export type OutputStream = Exclude<LogStream, "system">;

/**
 * What an event is: a plain line; `::progress N` (data: {percent}); `::event JSON` (data:
 * the JSON value); a warning from Baton about the output; the marker stored where output
 * over the job's cap stopped being stored.
 */
export const EVENT_KINDS = ["line", "progress", "event", "warning", "truncated"] as const;
export type EventKind = (typeof EVENT_KINDS)[number];

/** An event of an attempt's output as the worker captured it, before the store numbers it. */
export interface OutputLine {
  stream: LogStream;
  /** The text as written (for progress and events too), or Baton's message. */
  line: string;
  /** When the worker read it (epoch ms). */
  ts: number;
  kind: EventKind;
  /** Parsed payload of progress and structured events; null for the others. */
  data: unknown;
  /** The line was longer than the limit: this piece continues in the next event. */
  cut: boolean;
}

/** A stored line: numbered per job, in order, across attempts. */
export interface LogEvent extends OutputLine {
  seq: number;
  attempt: number;
}

/**
 * How many bytes of each stream of an attempt's output are stored: where a worker that
 * adopts a running attempt after a restart resumes reading.
 */
export interface OutputOffsets {
  stdout: number;
  stderr: number;
}

export const NO_OUTPUT: OutputOffsets = Object.freeze({ stdout: 0, stderr: 0 });

/** A plain, whole line. */
export function plainLine(stream: LogStream, line: string, ts: number): OutputLine {
  return { stream, line, ts, kind: "line", data: null, cut: false };
}

const PROGRESS = /^::progress\s+(\S+)\s*$/;
const EVENT = /^::event\s+(.*)$/;

/**
 * Classifies a complete line the job wrote: a progress report, a structured event, or a
 * plain line. A malformed directive is kept as a plain line, followed by a warning event
 * that says what was wrong: nothing the job wrote is lost.
 */
export function parseOutputLine(stream: OutputStream, line: string, ts: number): OutputLine[] {
  const plain = plainLine(stream, line, ts);
  if (!line.startsWith("::")) return [plain];
  const progress = PROGRESS.exec(line);
  if (progress) {
    const percent = Number(progress[1]);
    if (Number.isFinite(percent) && percent >= 0 && percent <= 100) {
      return [{ ...plain, kind: "progress", data: { percent } }];
    }
    return [plain, warning(`::progress wants a number from 0 to 100, got "${progress[1]}"`, ts)];
  }
  const event = EVENT.exec(line);
  if (event) {
    try {
      return [{ ...plain, kind: "event", data: JSON.parse(event[1] as string) as unknown }];
    } catch (error) {
      return [
        plain,
        warning(`::event is not followed by valid JSON (${(error as Error).message})`, ts),
      ];
    }
  }
  return [plain];
}

function warning(message: string, ts: number): OutputLine {
  return { stream: "system", line: message, ts, kind: "warning", data: null, cut: false };
}
