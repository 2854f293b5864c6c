/** A queue: its settings and how many of its jobs run and wait. */
export interface QueueInfo {
  name: string;
  /** A paused queue's jobs are not claimed; running ones go on. */
  paused: boolean;
  /** Most of its jobs running at once across all workers, or null. */
  maxRunning: number | null;
  running: number;
  pending: number;
}

/** A change to a queue's settings; absent fields stay as they are. */
export interface QueueChange {
  paused?: boolean;
  maxRunning?: number | null;
}
