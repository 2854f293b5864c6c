import type { JobState } from "./job.js";

/**
 * The legal state transitions. The store encodes each one as a guarded statement;
 * this table is the reference those statements and their tests are checked against.
 */
const TRANSITIONS: Readonly<Record<JobState, readonly JobState[]>> = {
  blocked: ["pending", "cancelled", "skipped"],
  // pending -> running is a claim; -> cancelled a cancel; -> skipped a stopped workflow.
  pending: ["running", "cancelled", "skipped"],
  // running -> pending is a retry or a shutdown release.
  running: ["succeeded", "failed", "cancelled", "pending"],
  succeeded: [],
  // A manual retry or a dead-letter replay puts a finished job back in line.
  failed: ["pending"],
  cancelled: ["pending"],
  skipped: [],
};

export function canTransition(from: JobState, to: JobState): boolean {
  return TRANSITIONS[from].includes(to);
}

export function isTerminal(state: JobState): boolean {
  return (
    state === "succeeded" || state === "failed" || state === "cancelled" || state === "skipped"
  );
}

export function assertTransition(from: JobState, to: JobState): void {
  if (!canTransition(from, to)) {
    throw new Error(`illegal job state transition ${from} -> ${to}`);
  }
}
