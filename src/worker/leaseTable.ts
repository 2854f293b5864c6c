import { renameSync, writeFileSync } from "node:fs";

/**
 * What the watchdog needs to know about the jobs a worker runs: which process group, and
 * until when its lease holds. The worker rewrites the file (atomically) whenever that
 * changes; the watchdog, a separate process that outlives the worker, only reads it.
 */
export interface LeaseTable {
  workerPid: number;
  /** Start time of the worker process (clock ticks after boot): with the pid, its identity. */
  workerStartTime: number | null;
  killGraceMs: number;
  jobs: LeaseEntry[];
}

export interface LeaseEntry {
  jobId: string;
  attempt: number;
  /** The job's process group: the pid of its leader. */
  pgid: number;
  leaderStartTime: number | null;
  /** Epoch ms after which the job must not be running. */
  expiresAt: number;
}

export function writeLeaseTable(path: string, table: LeaseTable): void {
  const temporary = `${path}.${process.pid}.tmp`;
  writeFileSync(temporary, JSON.stringify(table));
  renameSync(temporary, path);
}
