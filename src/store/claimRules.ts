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

/**
 * The job `job` counts against a limit another pending job may be waiting on: it has a
 * concurrency key, or its queue a running limit. When such a job ends, the stores announce
 * work available (claimers do not look again after every job that ends elsewhere).
 */
export function holdsLimitedSlot(prefix: string, job: string): string {
  return `(${job}.concurrency_key IS NOT NULL OR EXISTS (SELECT 1 FROM ${prefix}queues AS q
    WHERE q.name = ${job}.queue AND q.max_running IS NOT NULL))`;
}

/** A pending job a batch claim considers, with its queue's running limit. */
export interface ClaimCandidate {
  id: number;
  queue: string;
  cpus: number;
  memory_mb: number | null;
  concurrency_key: string | null;
  concurrency_limit: number;
  queue_limit: number | null;
}

/** What a claimer has left while it takes jobs one after another. */
export interface ClaimCapacity {
  cpus: number;
  memoryMb: number | null;
}

/** Running jobs per limited queue and per concurrency key, as far as the claimer knows. */
export interface RunningCounts {
  queues: Map<string, number>;
  keys: Map<string, number>;
}

/**
 * Walks candidates in claim order and takes, as successive claims would, each one that fits
 * what the ones taken before it left: free cpus and memory, its queue's running limit and
 * its key's limit (`running` counts the jobs taken). Takes at most `room`. Updates
 * `capacity` and `running`; returns the jobs taken, the queues and keys found full, and how
 * many were left for want of this claimer's capacity (another claimer might run those).
 */
export function pickFitting<C extends ClaimCandidate>(
  candidates: readonly C[],
  capacity: ClaimCapacity,
  running: RunningCounts,
  room: number,
): {
  picked: C[];
  skipped: number;
  overCapacity: number;
  fullQueues: Set<string>;
  fullKeys: Set<string>;
} {
  const picked: C[] = [];
  const fullQueues = new Set<string>();
  const fullKeys = new Set<string>();
  let skipped = 0;
  let overCapacity = 0;
  for (const job of candidates) {
    if (picked.length >= room) break;
    const memory = job.memory_mb;
    if (
      job.cpus > capacity.cpus ||
      (memory !== null && capacity.memoryMb !== null && memory > capacity.memoryMb)
    ) {
      skipped++;
      overCapacity++;
      continue;
    }
    if (job.queue_limit !== null && (running.queues.get(job.queue) ?? 0) >= job.queue_limit) {
      fullQueues.add(job.queue);
      skipped++;
      continue;
    }
    const key = job.concurrency_key;
    if (key !== null && (running.keys.get(key) ?? 0) >= job.concurrency_limit) {
      fullKeys.add(key);
      skipped++;
      continue;
    }
    picked.push(job);
    capacity.cpus -= job.cpus;
    if (capacity.memoryMb !== null) capacity.memoryMb -= memory ?? 0;
    if (job.queue_limit !== null) {
      running.queues.set(job.queue, (running.queues.get(job.queue) ?? 0) + 1);
    }
    if (key !== null) running.keys.set(key, (running.keys.get(key) ?? 0) + 1);
  }
  return { picked, skipped, overCapacity, fullQueues, fullKeys };
}

/** The capacity a claim request offers that these claimed jobs leave unused. */
export function unusedCapacity(
  request: { freeCpus: number; freeMemoryMb: number | null },
  claimed: ReadonlyArray<{ cpus: number; memory_mb: number | null }>,
): { freeCpus: number; freeMemoryMb: number | null } {
  let freeCpus = request.freeCpus;
  let freeMemoryMb = request.freeMemoryMb;
  for (const job of claimed) {
    freeCpus -= job.cpus;
    if (freeMemoryMb !== null) freeMemoryMb -= job.memory_mb ?? 0;
  }
  return { freeCpus, freeMemoryMb };
}
