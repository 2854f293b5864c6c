/**
 * The admission rules of a claim, as SQL both stores share; `j` is the candidate job and
 * `prefix` the schema prefix of the tables ("" in SQLite, "baton." in PostgreSQL).
 */

/** The job's queue is not paused and runs fewer jobs than its limit. */
export function queueAdmits(prefix: string): string {
  return `NOT EXISTS (
    SELECT 1 FROM ${prefix}queues AS q WHERE q.name = j.queue AND (q.paused = 1
      OR (q.max_running IS NOT NULL AND (SELECT count(*) FROM ${prefix}jobs AS r
        WHERE r.state = 'running' AND r.queue = j.queue) >= q.max_running)))`;
}

/** Fewer jobs of the job's concurrency key run than its limit. */
export function keyAdmits(prefix: string): string {
  return `(j.concurrency_key IS NULL OR (SELECT count(*) FROM ${prefix}jobs AS r
    WHERE r.state = 'running' AND r.concurrency_key = j.concurrency_key) < j.concurrency_limit)`;
}
