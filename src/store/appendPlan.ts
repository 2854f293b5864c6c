import type { OutputLine } from "../core/logEvent.js";

/** A job's output bookkeeping before an append, as both stores keep it on the job row. */
export interface LogState {
  log_seq: number;
  log_bytes: number;
  max_log_bytes: number;
  log_dropped_lines: number;
}

/** What an append stores and counts: the same rules in every store. */
export interface AppendPlan {
  /** Events to insert, numbered from `firstSeq`. */
  events: OutputLine[];
  firstSeq: number;
  lastSeq: number;
  bytes: number;
  droppedLines: number;
  droppedBytes: number;
  /** The last progress stored, or null. */
  progress: number | null;
}

/**
 * Applies the job's output cap to a batch: lines are stored while the job's stored bytes stay
 * within `max_log_bytes`; from the first line over it, everything is counted, not stored
 * (even what would still fit), and a `truncated` marker is stored once, where it began.
 */
export function planAppend(state: LogState, lines: readonly OutputLine[]): AppendPlan {
  const events: OutputLine[] = [];
  let bytes = state.log_bytes;
  let droppedLines = 0;
  let droppedBytes = 0;
  let progress: number | null = null;
  for (const line of lines) {
    const size = Buffer.byteLength(line.line);
    const dropping = state.log_dropped_lines + droppedLines > 0;
    if (dropping || bytes + size > state.max_log_bytes) {
      if (!dropping) events.push(truncationMarker(state.max_log_bytes, line.ts));
      droppedLines++;
      droppedBytes += size;
      continue;
    }
    bytes += size;
    events.push(line);
    if (line.kind === "progress") progress = (line.data as { percent: number }).percent;
  }
  return {
    events,
    firstSeq: state.log_seq + 1,
    lastSeq: state.log_seq + events.length,
    bytes,
    droppedLines,
    droppedBytes,
    progress,
  };
}

function truncationMarker(maxLogBytes: number, ts: number): OutputLine {
  return {
    stream: "system",
    line: `output reached this job's cap of ${maxLogBytes} bytes: the rest is counted, not stored`,
    ts,
    kind: "truncated",
    data: { maxLogBytes },
    cut: false,
  };
}
