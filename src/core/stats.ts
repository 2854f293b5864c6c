/** Pool statistics: what was submitted and how it ended, over a window, per queue. */

export interface QueueStats {
  submitted: number;
  succeeded: number;
  failed: number;
  cancelled: number;
  /** Now, whatever the window. */
  running: number;
  queued: number;
  /** Run time of the jobs that finished in the window (their last attempt), or null. */
  avgRunMs: number | null;
  p95RunMs: number | null;
}

export interface Stats {
  since: number;
  overall: QueueStats;
  queues: Record<string, QueueStats>;
}

/** Counts of one queue, as the store reads them. */
export type QueueCounts = Omit<QueueStats, "avgRunMs" | "p95RunMs"> & { queue: string };

/** Sums the counts and summarizes run times (`runTimes`: per queue, any order). */
export function summarizeStats(
  since: number,
  counts: readonly QueueCounts[],
  runTimes: ReadonlyMap<string, number[]>,
): Stats {
  const queues: Record<string, QueueStats> = {};
  const all: number[] = [];
  const total = { submitted: 0, succeeded: 0, failed: 0, cancelled: 0, running: 0, queued: 0 };
  for (const row of counts) {
    const times = runTimes.get(row.queue) ?? [];
    all.push(...times);
    const { queue, ...numbers } = row;
    queues[queue] = { ...numbers, ...runTimeSummary(times) };
    for (const key of Object.keys(total) as Array<keyof typeof total>) total[key] += row[key];
  }
  return { since, overall: { ...total, ...runTimeSummary(all) }, queues };
}

function runTimeSummary(times: number[]): Pick<QueueStats, "avgRunMs" | "p95RunMs"> {
  if (times.length === 0) return { avgRunMs: null, p95RunMs: null };
  const sorted = [...times].sort((a, b) => a - b);
  const sum = sorted.reduce((a, b) => a + b, 0);
  // Nearest rank: the smallest time that at least 95 % of the runs did not exceed.
  const rank = Math.ceil(0.95 * sorted.length) - 1;
  return { avgRunMs: Math.round(sum / sorted.length), p95RunMs: sorted[rank] ?? null };
}
