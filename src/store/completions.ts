import type { JobState } from "../core/job.js";
import { nextStateOf, type OutcomeRow, resultColumn } from "./rows.js";
import type { Completion, CompletionAnswer, StoreChange } from "./store.js";

/** What completing one attempt writes to its job and attempt rows (both stores). */
export interface CompletionUpdate {
  id: number;
  attempt: number;
  /** The attempt's worker and start, from the job's row, for the attempt's own row. */
  worker_id: string;
  started_at: number;
  state: JobState;
  run_at: number;
  /** Null when the job goes back to pending. */
  finished_at: number | null;
  exit_code: number | null;
  signal: string | null;
  result: string | null;
  failure_reason: string | null;
  failure_message: string | null;
}

/**
 * Decides a batch of completions in order, as successive `complete` calls would: each is
 * refused unless its job is running that very attempt (a second completion of an attempt in
 * the same batch is refused too); otherwise its next state is decided from the job's row.
 * `rows` holds the job rows read (and, in PostgreSQL, locked) for the batch, by id.
 */
export function decideCompletions(
  items: readonly Completion[],
  rows: ReadonlyMap<number, OutcomeRow>,
  idOf: (jobId: string) => number | null,
  now: number,
  random: () => number,
): { answers: CompletionAnswer[]; updates: CompletionUpdate[] } {
  const current = new Map(rows);
  const updates: CompletionUpdate[] = [];
  const answers = items.map(({ lease, outcome }): CompletionAnswer => {
    const id = idOf(lease.jobId);
    const row = id === null ? undefined : current.get(id);
    if (!row) return { applied: false, state: null };
    if (row.state !== "running" || row.attempt !== lease.attempt) {
      return { applied: false, state: row.state as JobState };
    }
    const next = nextStateOf(row, outcome, now, random());
    updates.push({
      id: row.id,
      attempt: lease.attempt,
      worker_id: row.worker_id ?? lease.workerId,
      started_at: row.started_at ?? now,
      state: next.state,
      run_at: next.runAt ?? row.run_at,
      finished_at: next.state === "pending" ? null : now,
      exit_code: outcome.exitCode,
      signal: outcome.signal,
      result: resultColumn(outcome),
      failure_reason: next.failure?.reason ?? null,
      failure_message: next.failure?.message ?? null,
    });
    current.set(row.id, { ...row, state: next.state });
    return { applied: true, state: next.state };
  });
  return { answers, updates };
}

/** A batch of completions as written: the answers, and whether work may now be available. */
export interface CompletionsWritten {
  answers: CompletionAnswer[];
  /** A job ended that held a limited slot (see holdsLimitedSlot), or one went back to pending. */
  available: boolean;
}

/**
 * What a batch of completions tells the store's listeners: each job whose completion was
 * applied finished, and a job is available when any went back to pending or freed a limited
 * slot. Returns how many were refused (fenced).
 */
export function announceCompletions(
  items: readonly Completion[],
  { answers, available: freed }: CompletionsWritten,
  emit: (change: StoreChange) => void,
): number {
  let fenced = 0;
  let available = freed;
  answers.forEach((answer, i) => {
    const jobId = items[i]?.lease.jobId;
    if (!answer.applied || jobId === undefined) {
      fenced++;
      return;
    }
    emit({ type: "job_finished", jobId });
    if (answer.state === "pending") available = true;
  });
  if (available) emit({ type: "job_available" });
  return fenced;
}
