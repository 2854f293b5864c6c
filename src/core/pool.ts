/** The worker pool as the registry records it: who serves what, with what capacity. */

/**
 * running: claiming; draining: finishing its jobs, claiming nothing, then exiting;
 * stopped: exited cleanly; lost: silent for longer than its lease TTL.
 */
export type WorkerStatus = "running" | "draining" | "stopped" | "lost";

export interface WorkerInfo {
  name: string;
  host: string;
  pid: number;
  state: WorkerStatus;
  /** null: every queue. */
  queues: string[] | null;
  /** Job slots: jobs it may run at once. */
  concurrency: number;
  cpus: number;
  memoryMb: number | null;
  /** Jobs it holds now, and what they use. */
  running: number;
  runningJobs: string[];
  usedCpus: number;
  usedMemoryMb: number;
  startedAt: number;
  lastHeartbeatAt: number;
}

/** What a worker reports of itself, at start (`fresh`) and then with each beat. */
export interface WorkerBeat {
  name: string;
  host: string;
  pid: number;
  queues: readonly string[] | null;
  concurrency: number;
  cpus: number;
  memoryMb: number | null;
  /** Silent for longer than this, the worker is counted lost. */
  ttlMs: number;
  /** First beat of this life: its own settings replace what the registry holds. */
  fresh: boolean;
}

/** What the registry asks of a worker: the slots it should have, and whether to drain. */
export interface WorkerOrders {
  concurrency: number;
  drain: boolean;
}

/** An operator's change to a live worker; absent fields stay as they are. */
export interface WorkerChange {
  concurrency?: number;
  drain?: boolean;
}

/** A worker that may take new jobs. */
export function isLive(worker: WorkerInfo): boolean {
  return worker.state === "running";
}

export function serves(worker: WorkerInfo, queue: string): boolean {
  return worker.queues === null || worker.queues.includes(queue);
}
