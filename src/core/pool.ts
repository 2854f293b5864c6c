/** The worker pool as the registry records it: who serves what, with what capacity. */

import type { JobSpec } from "./job.js";

/**
 * running: claiming; draining: finishing its jobs, claiming nothing, then exiting;
 * stopped: exited cleanly; lost: silent for longer than its lease TTL.
 */
export type WorkerStatus = "running" | "draining" | "stopped" | "lost";

/** The jobs a worker can run: shell jobs, or handler jobs of the handlers it has. */
export interface WorkerRuns {
  shell: boolean;
  /** Names of the handlers it has; empty: no handler jobs. */
  handlers: string[];
}

export interface WorkerInfo {
  name: string;
  host: string;
  pid: number;
  state: WorkerStatus;
  /** null: every queue. */
  queues: string[] | null;
  /** null: not told (a worker of an earlier version), counted as running anything. */
  runs: WorkerRuns | null;
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
  /** null: not told (a worker of an earlier version speaking the protocol). */
  runs: WorkerRuns | null;
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

/** Whether the worker can run a job of this kind (a handler job: with this handler). */
export function canRun(worker: WorkerInfo, job: Pick<JobSpec, "kind" | "handler">): boolean {
  if (worker.runs === null) return true;
  if (job.kind === "shell") return worker.runs.shell;
  return job.handler !== null && worker.runs.handlers.includes(job.handler);
}
