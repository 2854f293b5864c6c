import type { Job, JobDetail, JobKind, JobSpec, JobState } from "../core/job.js";
import type { LogEvent, LogStream, OutputLine, OutputOffsets } from "../core/logEvent.js";
import type { AttemptOutcome } from "../core/outcome.js";
import type { WaitFacts } from "../core/explain.js";
import type { WorkerBeat, WorkerChange, WorkerInfo, WorkerOrders } from "../core/pool.js";
import type { QueueChange, QueueInfo } from "../core/queue.js";
import type { Stats } from "../core/stats.js";
import type { Schedule, ScheduleSpec } from "../core/schedule.js";

export type { QueueChange, QueueInfo, Schedule, ScheduleSpec };

/**
 * The Store is the only place where state lives and changes. Every method that changes
 * state is one atomic operation; every write on behalf of a running attempt names the
 * attempt (the fencing token) and is refused, not applied, once that attempt has lost its
 * lease. Implementations: SQLite (embedded) now, PostgreSQL later, one conformance suite.
 */
export interface Store {
  /** Stores a new job, or returns the live job holding the same idempotency key. */
  submit(spec: JobSpec): Promise<{ job: Job; created: boolean }>;
  /**
   * Stores several jobs in one transaction, all or none; each answer is as `submit`'s, in
   * the order given.
   */
  submitBatch(specs: readonly JobSpec[]): Promise<Array<{ job: Job; created: boolean }>>;
  /** The job with its attempts, or null. */
  get(id: string): Promise<JobDetail | null>;
  list(query: ListQuery): Promise<JobPage>;

  /**
   * Claims the most urgent pending job that fits: highest priority, then earliest runAt,
   * then oldest; in one of the worker's queues; needing no more than its free CPUs and
   * memory. Takes the next attempt number and leases the job to the worker.
   */
  claim(request: ClaimRequest): Promise<Claim | null>;
  /**
   * Claims up to `max` jobs as successive `claim`s would (each fitting what the ones before
   * it left free, queue and key limits counting them), in one transaction.
   */
  claimBatch(request: ClaimRequest, max: number): Promise<Claim[]>;
  /**
   * True where claims run one at a time (one writer): a batch then takes exactly the jobs
   * successive claims would, whatever other claimers do at the same moment.
   */
  readonly serialClaims?: boolean;
  /** Extends the lease if the attempt still holds it, and says whether a cancel is pending. */
  heartbeat(lease: Lease, ttlMs: number): Promise<HeartbeatAnswer>;
  /** Heartbeats several attempts at once; answers in the order given. */
  heartbeatBatch(leases: readonly Lease[], ttlMs: number): Promise<HeartbeatAnswer[]>;
  /**
   * Appends output lines of the attempt; refused once the attempt has lost the lease.
   * `stored`, when given, records how far into each stream the stored output now reaches.
   */
  appendLogs(
    lease: Lease,
    lines: readonly OutputLine[],
    stored?: OutputOffsets,
  ): Promise<AppendAnswer>;
  /** Records the attempt's outcome and moves the job on (done, retry, failed, cancelled). */
  complete(lease: Lease, outcome: AttemptOutcome): Promise<FencedAnswer>;
  /**
   * Records several attempts' outcomes in one transaction, each fenced on its own (a refused
   * one does not stop the others); answers in the order given, with the job's new state.
   */
  completeBatch(items: readonly Completion[]): Promise<CompletionAnswer[]>;
  /** Gives the job back to pending without spending an attempt (graceful shutdown). */
  release(lease: Lease, message: string): Promise<FencedAnswer>;
  /** The running attempts whose leases the worker holds (for adoption after a restart). */
  heldBy(workerId: string): Promise<HeldLease[]>;
  /** Every queue that has jobs or settings, with its settings and counts. */
  listQueues(): Promise<QueueInfo[]>;
  /** Pauses or resumes a queue, or sets its running limit (null: none). */
  updateQueue(name: string, change: QueueChange): Promise<QueueInfo>;
  /**
   * Puts failed (or cancelled, when `states` says so) jobs back in line with a fresh set of
   * attempts, keeping their history; the next attempt is marked as a replay of the last.
   * Returns the jobs it moved.
   */
  retry(selector: RetrySelector): Promise<JobDetail[]>;

  /** Records a worker's beat and answers what the registry asks of it. */
  beatWorker(beat: WorkerBeat): Promise<WorkerOrders>;
  /** Marks a worker as exited cleanly. */
  stopWorker(name: string): Promise<void>;
  /** Workers seen in the last day, with what they run now. */
  listWorkers(): Promise<WorkerInfo[]>;
  /** Changes a worker's slots or asks it to drain; null when there is no such worker. */
  updateWorker(name: string, change: WorkerChange): Promise<WorkerInfo | null>;

  /** Counts and run times since `since` (running and queued: now). */
  stats(since: number): Promise<Stats>;
  /** What bears on a job's wait (for `explain`), or null when there is no such job. */
  waitFacts(id: string): Promise<WaitFacts | null>;

  /**
   * Creates or replaces the schedule of that name; `created` says which. A replaced schedule
   * keeps its paused state, history and, if its expression and time zone are unchanged, its
   * next firing.
   */
  putSchedule(spec: ScheduleSpec): Promise<{ schedule: Schedule; created: boolean }>;
  getSchedule(name: string): Promise<Schedule | null>;
  listSchedules(): Promise<Schedule[]>;
  /**
   * Pauses or resumes a schedule; null if there is none. A paused schedule fires nothing; on
   * resume, the firings that passed meanwhile count as missed and its policy decides them.
   */
  pauseSchedule(name: string, paused: boolean): Promise<Schedule | null>;
  /** Removes a schedule (its jobs stay); false if there was none. */
  removeSchedule(name: string): Promise<boolean>;
  /**
   * Handles every due firing at the store's clock, one transaction each: a compare-and-set
   * moves the schedule's next firing on, and the job is inserted only if that update changed
   * the row, under the idempotency key of the firing. Safe on any number of servers at once:
   * each firing gets one job. Returns what it did.
   */
  fireSchedules(): Promise<Firing[]>;

  /** Jobs held by the worker whose cancellation was requested. */
  cancelRequests(workerId: string): Promise<Lease[]>;

  /**
   * Cancels a job: a pending one at once; a running one by asking its worker (the worker
   * stops it and records `cancelled`); a finished one is left unchanged. Idempotent.
   */
  cancel(id: string): Promise<Job | null>;
  /** Turns expired leases into retries or `worker_lost` failures. Idempotent; returns how many. */
  reapExpired(): Promise<number>;

  readLogs(id: string, query: LogQuery): Promise<LogEvent[]>;
  /**
   * Removes the output of up to `maxJobs` jobs that finished before `finishedBefore`
   * (retention). Returns how many jobs' output it removed: call again until 0.
   */
  pruneLogs(finishedBefore: number, maxJobs: number): Promise<number>;

  /**
   * Calls `listener` when something another party did may matter to the caller: a job
   * became available, a cancel was requested, logs were appended, a job finished.
   * Returns the function that stops listening.
   */
  watch(listener: (change: StoreChange) => void): () => void;
  counters(): StoreCounters;
  /** Throws when the store cannot be reached (readiness). */
  ping(): Promise<void>;
  close(): Promise<void>;
}

export type RetrySelector = {
  /** Jobs in these states are moved; others are left alone. */
  states: ReadonlyArray<"failed" | "cancelled">;
} & ({ ids: readonly string[] } | { queue: string | null });

/**
 * What a worker needs of a store: a Store, or a client of a Baton server speaking the worker
 * protocol on its behalf.
 */
export type WorkerStore = Pick<
  Store,
  | "claim"
  | "claimBatch"
  | "serialClaims"
  | "heartbeat"
  | "heartbeatBatch"
  | "appendLogs"
  | "complete"
  | "completeBatch"
  | "release"
  | "heldBy"
  | "beatWorker"
  | "stopWorker"
  | "cancelRequests"
  | "reapExpired"
  | "watch"
>;

export interface Completion {
  lease: Lease;
  outcome: AttemptOutcome;
}

/** `applied: false` when the attempt had lost its lease; `state` is the job's state after. */
export interface CompletionAnswer {
  applied: boolean;
  state: JobState | null;
}

export interface Lease {
  jobId: string;
  attempt: number;
  workerId: string;
}

export interface ClaimRequest {
  workerId: string;
  /** null: every queue. */
  queues: readonly string[] | null;
  kinds: readonly JobKind[];
  /** Handler jobs: only those naming one of these handlers (undefined or null: any). */
  handlers?: readonly string[] | null;
  freeCpus: number;
  freeMemoryMb: number | null;
  leaseTtlMs: number;
}

export interface Claim {
  job: Job;
  lease: Lease;
  expiresAt: number;
}

export interface HeldLease extends Claim {
  /** How much of each stream of the attempt's output is stored. */
  stored: OutputOffsets;
}

export type HeartbeatAnswer =
  { held: true; cancel: boolean; expiresAt: number } | { held: false; cancel: false };

export type FencedAnswer = { applied: true; job: Job } | { applied: false; job: Job | null };

export type AppendAnswer = { applied: true; lastSeq: number } | { applied: false };

export interface ListQuery {
  state?: JobState | undefined;
  queue?: string | undefined;
  limit: number;
  /** Returns jobs with ids below this one (pages go newest first). */
  cursor?: string | undefined;
}

export interface JobPage {
  jobs: Job[];
  nextCursor: string | null;
}

export interface LogQuery {
  after: number;
  limit: number;
  attempt?: number | undefined;
  stream?: LogStream | undefined;
}

export type StoreChange =
  | { type: "job_available" }
  | { type: "cancel_requested"; jobId: string }
  | { type: "logs"; jobId: string }
  | { type: "job_finished"; jobId: string }
  /** Another process changed the store; anything may have happened. */
  | { type: "external" };

/** One firing handled by `fireSchedules`. */
export interface Firing {
  schedule: string;
  /** The (first) firing time handled. */
  at: number;
  /** Older than the grace: the missed policy decided (skip: no job; run-once: one job). */
  missed: boolean;
  /** The job of the firing; null when none was created (skipped, or an error). */
  jobId: string | null;
  /** Why the schedule could not fire (it is stored but this Baton cannot read it), or null. */
  error: string | null;
}

export interface StoreCounters {
  /** Writes refused because the attempt no longer held the lease. */
  fencedWrites: number;
}
