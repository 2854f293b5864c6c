import { type FSWatcher, mkdirSync, watch } from "node:fs";
import { basename, dirname } from "node:path";
import Database from "better-sqlite3";
import type { WaitFacts } from "../../core/explain.js";
import {
  DEFAULT_IDEMPOTENCY_RETENTION_MS,
  idempotencyKeyExpired,
  type JobDetail,
  type JobSpec,
} from "../../core/job.js";
import type { WorkerBeat, WorkerChange, WorkerInfo, WorkerOrders } from "../../core/pool.js";
import { type QueueCounts, type Stats, summarizeStats } from "../../core/stats.js";
import { type LogEvent, type OutputLine, type OutputOffsets } from "../../core/logEvent.js";
import { type AttemptOutcome, type NextState, workerLostOutcome } from "../../core/outcome.js";
import { MISSED_GRACE_MS, type Schedule, type ScheduleSpec } from "../../core/schedule.js";
import type {
  AppendAnswer,
  Claim,
  ClaimRequest,
  Completion,
  CompletionAnswer,
  FencedAnswer,
  Firing,
  HeartbeatAnswer,
  HeldLease,
  QueueChange,
  QueueInfo,
  JobPage,
  Lease,
  ListQuery,
  LogQuery,
  RetrySelector,
  Store,
  StoreChange,
  StoreCounters,
} from "../store.js";
import {
  type ClaimCandidate,
  holdsLimitedSlot,
  keyAdmits,
  pickFitting,
  queueAdmits,
  type RunningCounts,
} from "../claimRules.js";
import { announceCompletions, type CompletionsWritten, decideCompletions } from "../completions.js";
import { migrate } from "./migrate.js";
import { type LogState, planAppend } from "../appendPlan.js";
import {
  type AttemptRow,
  countsFromRows,
  detailFromRows,
  heldLeaseFromRow,
  JOB_ROW_COLUMNS,
  type JobRow,
  jobFromRow,
  jobRowFromValues,
  NEW_JOB_COLUMNS,
  newJobColumns,
  pendingJob,
  type LogRow,
  logEventFromRow,
  queueFromRow,
  type QueueRow,
  nextStateOf,
  OUTCOME_COLUMNS,
  type OutcomeRow,
  queueCountsSql,
  replaysColumn,
  resultColumn,
  type RunningRow,
  runTimesByQueue,
  runTimesSql,
  WORKER_LISTING_MS,
  type WorkerRow,
  workersFromRows,
} from "../rows.js";
import { firingOf, firstFiring, scheduleFromRow, type ScheduleRow } from "../scheduleRows.js";

export interface SqliteStoreOptions {
  /** Database file, or ":memory:". Its directory is created if missing. */
  path: string;
  now?: () => number;
  random?: () => number;
  /**
   * Safety-net interval for noticing other processes' writes when the file watcher
   * misses them (it normally reports them at once).
   */
  pollIntervalMs?: number;
  /** A finished job keeps its idempotency key this long; after it, the key is free again. */
  idempotencyRetentionMs?: number;
}

const SHUTDOWN_REASON = "shutdown";

/** A candidate of a batch claim, with the running counts of its queue and key. */
type CandidateRow = ClaimCandidate & { queue_running: number | null; key_running: number | null };

/** id, attempt, worker_id and cancel_requested of a held lease. */
type HeldValues = [number, number, string, number];

type InsertResult = { job: JobDetail; created: boolean };

interface SubmitCaller {
  spec: JobSpec;
  resolve: (answer: { job: JobDetail; created: boolean }) => void;
  reject: (error: unknown) => void;
}
/** Firings one `fireSchedules` call handles at most; the next call goes on. */
const MAX_FIRINGS_PER_CALL = 1_000;

/**
 * The embedded store on better-sqlite3. WAL lets readers run beside the single writer;
 * every state change is one IMMEDIATE transaction, so concurrent workers in other
 * processes serialize on SQLite's write lock rather than racing.
 */
export class SqliteStore implements Store {
  /** SQLite has one writer at a time: no claimer ever holds a job locked while another looks. */
  readonly serialClaims = true;
  private readonly db: Database.Database;
  private readonly now: () => number;
  private readonly random: () => number;
  private readonly pollIntervalMs: number;
  private readonly idempotencyRetentionMs: number;
  private readonly path: string;
  private readonly listeners = new Set<(change: StoreChange) => void>();
  private readonly sql;
  private readonly tx;
  private fencedWrites = 0;
  private readonly insertStatements = new Map<number, Database.Statement>();
  /** Submits waiting for the group commit at the end of this turn of the event loop. */
  private submitGroup: SubmitCaller[] = [];
  private watcher: FSWatcher | null = null;
  private pollTimer: NodeJS.Timeout | null = null;
  private dataVersion = 0;
  private checkScheduled = false;
  private closed = false;

  constructor(options: SqliteStoreOptions) {
    this.path = options.path;
    this.now = options.now ?? Date.now;
    this.random = options.random ?? Math.random;
    this.pollIntervalMs = options.pollIntervalMs ?? 1_000;
    this.idempotencyRetentionMs =
      options.idempotencyRetentionMs ?? DEFAULT_IDEMPOTENCY_RETENTION_MS;
    if (this.path !== ":memory:") mkdirSync(dirname(this.path), { recursive: true });
    this.db = new Database(this.path);
    this.db.pragma("journal_mode = WAL");
    // FULL: a job accepted is a job on disk, even across a power cut.
    this.db.pragma("synchronous = FULL");
    this.db.pragma("busy_timeout = 10000");
    this.db.pragma("foreign_keys = ON");
    migrate(this.db, this.path);
    this.sql = prepareStatements(this.db);
    // Transaction functions of the hot paths, made once (making one costs more than a write).
    const insertAlone = this.db.transaction((spec: JobSpec) => this.insertJob(spec));
    this.tx = {
      heartbeatBatch: this.db.transaction((leases: string, expires: number) => {
        this.sql.extendLeases.run({ leases, expires });
        return this.sql.heldLeases.all(leases) as HeldValues[];
      }),
      completeBatch: this.db.transaction((items: readonly Completion[], now: number) =>
        this.completeInTransaction(items, now),
      ),
      submitBatch: this.db.transaction((specs: readonly JobSpec[]) => this.insertJobs(specs)),
      submitGroup: this.db.transaction((group: readonly SubmitCaller[]) =>
        group.map(({ spec }): InsertResult | { error: unknown } => {
          if (group.length === 1) return this.insertJob(spec);
          try {
            // Without a key, a job is one statement, which a failure undoes on its own; with
            // one, it may also free an expired key: a savepoint undoes both (it costs 2 µs).
            if (spec.idempotencyKey === null) return this.insertJob(spec);
            return insertAlone(spec);
          } catch (error) {
            // SQLite may have rolled the whole transaction back (disk full, I/O error):
            // then nothing of the group is stored, and every caller must hear so.
            if (!this.db.inTransaction) throw error;
            return { error };
          }
        }),
      ),
    };
  }

  /**
   * Submits made in the same turn of the event loop are written in one transaction (one
   * fsync), each undone on its own if it cannot be stored (its statement, or its savepoint
   * where it takes two), so that it fails alone.
   * They are applied in the order they were made, exactly as one-by-one submits.
   */
  submit(spec: JobSpec): Promise<{ job: JobDetail; created: boolean }> {
    return new Promise((resolve, reject) => {
      this.submitGroup.push({ spec, resolve, reject });
      if (this.submitGroup.length === 1) setImmediate(() => this.flushSubmits());
    });
  }

  private flushSubmits(): void {
    const group = this.submitGroup;
    this.submitGroup = [];
    let results: Array<InsertResult | { error: unknown }>;
    try {
      results = this.tx.submitGroup.immediate(group);
    } catch (error) {
      for (const { reject } of group) reject(error);
      return;
    }
    if (results.some((result) => "created" in result && result.created)) {
      this.emit({ type: "job_available" });
    }
    results.forEach((result, i) => {
      const caller = group[i];
      if (!caller) return;
      if ("error" in result) caller.reject(result.error);
      else caller.resolve(result);
    });
  }

  async submitBatch(
    specs: readonly JobSpec[],
  ): Promise<Array<{ job: JobDetail; created: boolean }>> {
    const results = this.tx.submitBatch.immediate(specs);
    if (results.some((result) => result.created)) this.emit({ type: "job_available" });
    return results;
  }

  /**
   * Inserts the jobs in order, inside the caller's transaction: runs of jobs without an
   * idempotency key go in one statement of up to JOB_ROWS_PER_INSERT rows (binding a
   * statement per row costs about as much as SQLite storing it); keyed ones one by one, as
   * each may find its key taken, even by a job earlier in the same batch.
   */
  private insertJobs(specs: readonly JobSpec[]): InsertResult[] {
    const results: InsertResult[] = [];
    const now = this.now();
    let run: JobSpec[] = [];
    const flush = () => {
      if (run.length === 0) return;
      const values: unknown[] = [];
      for (const spec of run) {
        const columns = newJobColumns(spec, now);
        for (const name of NEW_JOB_COLUMNS) values.push(columns[name]);
      }
      const { lastInsertRowid } = this.insertRows(run.length).run(values);
      // One statement, one writer: its rows took consecutive ids, the last one reported.
      const first = Number(lastInsertRowid) - run.length + 1;
      run.forEach((spec, i) =>
        results.push({ job: pendingJob(first + i, spec, now), created: true }),
      );
      run = [];
    };
    for (const spec of specs) {
      if (spec.idempotencyKey !== null) {
        flush();
        results.push(this.insertJob(spec));
        continue;
      }
      run.push(spec);
      if (run.length === JOB_ROWS_PER_INSERT) flush();
    }
    flush();
    return results;
  }

  /** The INSERT of `rows` new jobs, prepared once per row count. */
  private insertRows(rows: number): Database.Statement {
    let statement = this.insertStatements.get(rows);
    if (!statement) {
      const row = `(${NEW_JOB_COLUMNS.map(() => "?").join(", ")}, 'pending')`;
      statement = this.db.prepare(
        `INSERT INTO jobs (${NEW_JOB_COLUMNS.join(", ")}, state) VALUES ${Array(rows).fill(row).join(", ")}`,
      );
      this.insertStatements.set(rows, statement);
    }
    return statement;
  }

  /** Inserts one job, inside the caller's transaction; the existing one for a taken key. */
  private insertJob(spec: JobSpec): InsertResult {
    if (spec.idempotencyKey !== null) {
      const found = this.sql.byIdempotencyKey.get(spec.idempotencyKey) as string | undefined;
      const existing = found === undefined ? undefined : (JSON.parse(found) as JobRow);
      const expired =
        existing &&
        idempotencyKeyExpired(existing.finished_at, this.now(), this.idempotencyRetentionMs);
      if (existing && !expired) {
        return { job: detailFromRows(existing, []), created: false };
      }
      // Finished longer ago than the retention window: the key is free for a new job.
      if (existing) this.sql.releaseIdempotencyKey.run(existing.id);
    }
    const now = this.now();
    const columns = newJobColumns(spec, now);
    const { lastInsertRowid } = this.sql.insert.run(NEW_JOB_COLUMNS.map((name) => columns[name]));
    return { job: pendingJob(Number(lastInsertRowid), spec, now), created: true };
  }

  async get(id: string): Promise<JobDetail | null> {
    const numericId = parseId(id);
    if (numericId === null) return null;
    return this.db.transaction(() => this.detail(numericId))();
  }

  async list(query: ListQuery): Promise<JobPage> {
    const cursor = query.cursor === undefined ? null : parseId(query.cursor);
    const rows = this.sql.list.all({
      state: query.state ?? null,
      queue: query.queue ?? null,
      cursor,
      limit: query.limit + 1,
    }) as JobRow[];
    const page = rows.slice(0, query.limit);
    const last = page.at(-1);
    return {
      jobs: page.map(jobFromRow),
      nextCursor: rows.length > query.limit && last ? String(last.id) : null,
    };
  }

  async claim(request: ClaimRequest): Promise<Claim | null> {
    const [claim] = await this.claimBatch(request, 1);
    return claim ?? null;
  }

  /**
   * One IMMEDIATE transaction: reads the most urgent admissible jobs a window at a time,
   * takes each that fits what the ones before it left (capacity, queue and key limits), and
   * leases them. A window where something did not fit is followed by another, which the
   * store's counts (now including the jobs taken) and the remaining capacity filter anew.
   */
  async claimBatch(request: ClaimRequest, max: number): Promise<Claim[]> {
    if (max <= 0) return [];
    const now = this.now();
    const expiresAt = now + request.leaseTtlMs;
    const rows = this.db
      .transaction(() => {
        // Each claimed job's row, and the ids in the order they were picked.
        const claimed: JobRow[] = [];
        const order: number[] = [];
        const capacity = { cpus: request.freeCpus, memoryMb: request.freeMemoryMb };
        const filters = {
          now,
          all_queues: request.queues === null ? 1 : 0,
          queues: JSON.stringify(request.queues ?? []),
          kinds: JSON.stringify(request.kinds),
          any_handler: request.handlers == null ? 1 : 0,
          handlers: JSON.stringify(request.handlers ?? []),
        };
        while (claimed.length < max) {
          const room = max - claimed.length;
          const values = this.sql.claimCandidates.all({
            ...filters,
            free_cpus: capacity.cpus,
            free_memory: capacity.memoryMb,
            limit: room,
          }) as unknown[][];
          const candidates = values.map(candidateFromValues);
          const running: RunningCounts = { queues: new Map(), keys: new Map() };
          for (const row of candidates) {
            if (row.queue_running !== null) running.queues.set(row.queue, row.queue_running);
            if (row.key_running !== null && row.concurrency_key !== null) {
              running.keys.set(row.concurrency_key, row.key_running);
            }
          }
          const { picked, skipped } = pickFitting(candidates, capacity, running, room);
          if (picked.length === 0) break;
          for (const candidate of picked) order.push(candidate.id);
          const lease = {
            ids: JSON.stringify(picked.map((candidate) => candidate.id)),
            worker: request.workerId,
            now,
            expires: expiresAt,
          };
          // Nothing else writes inside this transaction: every candidate is still pending.
          const rows = this.sql.markRunningMany.all(lease) as unknown[][];
          if (rows.length !== picked.length) throw new Error("claimed jobs changed under the lock");
          for (const values of rows) claimed.push(jobRowFromValues(values));
          if (skipped === 0 && candidates.length < room) break;
        }
        if (claimed.length === 0) return [];
        // The rows as the update left them, in claim order (RETURNING's order is not defined).
        const byId = new Map(claimed.map((row) => [row.id, row]));
        return order.flatMap((id) => byId.get(id) ?? []);
      })
      .immediate();
    return rows.map((row) => {
      const job = jobFromRow(row);
      return {
        job,
        lease: { jobId: job.id, attempt: job.attempt, workerId: request.workerId },
        expiresAt,
      };
    });
  }

  /**
   * One transaction: every lease still held is extended in one statement, then the held
   * ones are read back with their cancel flags; answers in the order given.
   */
  async heartbeatBatch(leases: readonly Lease[], ttlMs: number): Promise<HeartbeatAnswer[]> {
    if (leases.length === 0) return [];
    const expiresAt = this.now() + ttlMs;
    const rows = this.tx.heartbeatBatch.immediate(
      JSON.stringify(leases.map((lease) => [parseId(lease.jobId), lease.attempt, lease.workerId])),
      expiresAt,
    );
    const held = new Map(rows.map((v) => [leaseKey(v[0], v[1], v[2]), v[3] === 1]));
    return leases.map((lease) => {
      const cancel = held.get(leaseKey(parseId(lease.jobId), lease.attempt, lease.workerId));
      if (cancel === undefined) {
        this.fencedWrites++;
        return { held: false, cancel: false };
      }
      return { held: true, cancel, expiresAt };
    });
  }

  /**
   * One transaction: reads the jobs' rows, fences and decides each completion in order
   * (decideCompletions), then updates each job and attempt that moved.
   */
  async completeBatch(items: readonly Completion[]): Promise<CompletionAnswer[]> {
    if (items.length === 0) return [];
    const written = this.tx.completeBatch.immediate(items, this.now());
    this.fencedWrites += announceCompletions(items, written, (change) => this.emit(change));
    return written.answers;
  }

  private completeInTransaction(items: readonly Completion[], now: number): CompletionsWritten {
    const ids = new Set(items.flatMap(({ lease }) => parseId(lease.jobId) ?? []));
    const values = this.sql.outcomeRows.all(JSON.stringify([...ids])) as unknown[][];
    const rows = new Map(values.map((v) => [v[0] as number, outcomeFromValues(v)]));
    const { answers, updates } = decideCompletions(items, rows, parseId, now, this.random);
    // Inside this transaction nothing else writes: every job decided on is still running.
    for (const u of updates) {
      const { changes } = this.sql.completeJob.run(
        u.state,
        u.run_at,
        u.finished_at,
        u.exit_code,
        u.signal,
        u.result,
        u.failure_reason,
        u.failure_message,
        u.state, // again, for worker_id
        u.id,
        u.attempt,
      );
      if (changes !== 1) throw new Error("completed jobs changed under the lock");
      this.sql.finishAttempt.run(
        u.id,
        u.attempt,
        u.worker_id,
        u.started_at,
        now,
        u.exit_code,
        u.signal,
        u.failure_reason,
        u.failure_message,
      );
    }
    const ended = updates.map((u) => u.id);
    return { answers, available: ended.length > 0 && this.anyHoldsLimitedSlot(ended) };
  }

  /** Whether any of these jobs holds a limited slot (see holdsLimitedSlot). */
  private anyHoldsLimitedSlot(ids: readonly number[]): boolean {
    return this.sql.holdLimitedSlots.get(JSON.stringify(ids)) === 1;
  }

  async heartbeat(lease: Lease, ttlMs: number): Promise<HeartbeatAnswer> {
    const expiresAt = this.now() + ttlMs;
    const row = this.sql.heartbeat.get({ ...fence(lease), expires: expiresAt }) as
      { cancel_requested: number } | undefined;
    if (!row) {
      this.fencedWrites++;
      return { held: false, cancel: false };
    }
    return { held: true, cancel: row.cancel_requested === 1, expiresAt };
  }

  async appendLogs(
    lease: Lease,
    lines: readonly OutputLine[],
    stored?: OutputOffsets,
  ): Promise<AppendAnswer> {
    if (lines.length === 0) {
      const row = this.sql.fencedLogSeq.get(fence(lease)) as { log_seq: number } | undefined;
      if (!row) this.fencedWrites++;
      return row ? { applied: true, lastSeq: row.log_seq } : { applied: false };
    }
    const lastSeq = this.db
      .transaction(() => {
        const state = this.sql.logState.get(fence(lease)) as LogState | undefined;
        if (!state) return null;
        const plan = planAppend(state, lines);
        const id = Number(lease.jobId);
        let seq = plan.firstSeq;
        // Rows go in LOG_ROWS_PER_INSERT at a time: one statement per row costs more in
        // the binding than SQLite spends storing it.
        const pending: unknown[] = [];
        for (const line of plan.events) {
          const data = line.data === null ? null : JSON.stringify(line.data);
          pending.push(id, seq++, lease.attempt, line.stream, line.line, line.ts, line.kind);
          pending.push(data, line.cut ? 1 : 0);
          if (pending.length === LOG_ROWS_PER_INSERT * LOG_COLUMNS) {
            this.sql.insertLogs.run(pending);
            pending.length = 0;
          }
        }
        for (let i = 0; i < pending.length; i += LOG_COLUMNS) {
          this.sql.insertLog.run(pending.slice(i, i + LOG_COLUMNS));
        }
        this.sql.updateLogState.run({
          id,
          seq: plan.lastSeq,
          bytes: plan.bytes,
          dropped_lines: plan.droppedLines,
          dropped_bytes: plan.droppedBytes,
          progress: plan.progress,
          offsets: stored ? JSON.stringify(stored) : null,
        });
        return plan.lastSeq;
      })
      .immediate();
    if (lastSeq === null) {
      this.fencedWrites++;
      return { applied: false };
    }
    this.emit({ type: "logs", jobId: lease.jobId });
    return { applied: true, lastSeq };
  }

  async complete(lease: Lease, outcome: AttemptOutcome): Promise<FencedAnswer> {
    return this.finishAttempt(lease, outcome);
  }

  async release(lease: Lease, message: string): Promise<FencedAnswer> {
    const now = this.now();
    const ended = this.db
      .transaction(() => {
        const current = this.sql.byId.get(Number(lease.jobId)) as JobRow | undefined;
        if (!current) return null;
        // A job whose cancel was requested is not put back in line: it ends cancelled.
        if (current.cancel_requested === 1) {
          const stopped: AttemptOutcome = { state: "cancelled", exitCode: null, signal: null };
          if (!this.applyOutcome(current, lease, stopped, now)) return null;
          return {
            job: this.detail(current.id),
            available: this.anyHoldsLimitedSlot([current.id]),
          };
        }
        const row = this.sql.release.get(fence(lease)) as JobRow | undefined;
        if (!row) return null;
        // The attempt's worker and start, as the job's row held them before the release.
        this.sql.finishAttempt.run(
          row.id,
          lease.attempt,
          lease.workerId,
          current.started_at ?? now,
          now,
          null,
          null,
          SHUTDOWN_REASON,
          message,
        );
        return { job: this.detail(row.id), available: true };
      })
      .immediate();
    if (!ended?.job) return this.refused(lease);
    const { job } = ended;
    if (job.state !== "pending") this.emit({ type: "job_finished", jobId: job.id });
    if (ended.available) this.emit({ type: "job_available" });
    return { applied: true, job };
  }

  async heldBy(workerId: string): Promise<HeldLease[]> {
    const rows = this.sql.heldBy.all({ worker: workerId }) as JobRow[];
    return rows.map((row) => heldLeaseFromRow(row, workerId));
  }

  async listQueues(): Promise<QueueInfo[]> {
    return (this.sql.queues.all() as QueueRow[]).map(queueFromRow);
  }

  async updateQueue(name: string, change: QueueChange): Promise<QueueInfo> {
    const info = this.db
      .transaction(() => {
        this.sql.upsertQueue.run({
          name,
          paused: change.paused === undefined ? null : change.paused ? 1 : 0,
          max_running: change.maxRunning ?? null,
          set_max: change.maxRunning === undefined ? 0 : 1,
        });
        return queueFromRow(this.sql.queue.get({ name }) as QueueRow);
      })
      .immediate();
    // A resumed queue or a raised limit may let jobs run.
    this.emit({ type: "job_available" });
    return info;
  }

  async retry(selector: RetrySelector): Promise<JobDetail[]> {
    const now = this.now();
    const states = JSON.stringify(selector.states);
    const jobs = this.db
      .transaction(() => {
        const rows =
          "ids" in selector
            ? selector.ids.flatMap((id) => {
                const numericId = parseId(id);
                const row = numericId === null ? undefined : this.sql.byId.get(numericId);
                return row ? [row as JobRow] : [];
              })
            : (this.sql.retryableInQueue.all({ queue: selector.queue, states }) as JobRow[]);
        const moved: JobDetail[] = [];
        for (const row of rows) {
          if (!(selector.states as readonly string[]).includes(row.state)) continue;
          const replays = replaysColumn(row, {
            at: now,
            afterAttempt: row.attempt,
            failure: row.failure_reason === null ? null : jobFromRow(row).failure,
          });
          this.sql.requeue.run({ id: row.id, state: row.state, now, replays });
          const job = this.detail(row.id);
          if (job) moved.push(job);
        }
        return moved;
      })
      .immediate();
    if (jobs.length > 0) this.emit({ type: "job_available" });
    return jobs;
  }

  async beatWorker(beat: WorkerBeat): Promise<WorkerOrders> {
    const statement = beat.fresh ? this.sql.registerWorker : this.sql.beatWorker;
    const row = statement.get({
      name: beat.name,
      host: beat.host,
      pid: beat.pid,
      queues: beat.queues === null ? null : JSON.stringify(beat.queues),
      runs: beat.runs === null ? null : JSON.stringify(beat.runs),
      concurrency: beat.concurrency,
      cpus: beat.cpus,
      memory_mb: beat.memoryMb,
      ttl_ms: beat.ttlMs,
      now: this.now(),
    }) as { concurrency: number; drain: number };
    return { concurrency: row.concurrency, drain: row.drain === 1 };
  }

  async stopWorker(name: string): Promise<void> {
    this.sql.stopWorker.run({ name, now: this.now() });
  }

  async listWorkers(): Promise<WorkerInfo[]> {
    const now = this.now();
    return this.db.transaction(() => {
      const rows = this.sql.workers.all({ since: now - WORKER_LISTING_MS }) as WorkerRow[];
      return workersFromRows(rows, this.sql.runningJobs.all() as RunningRow[], now);
    })();
  }

  async updateWorker(name: string, change: WorkerChange): Promise<WorkerInfo | null> {
    const changed = this.sql.updateWorker.run({
      name,
      concurrency: change.concurrency ?? null,
      drain: change.drain === undefined ? null : change.drain ? 1 : 0,
    });
    if (changed.changes === 0) return null;
    return (await this.listWorkers()).find((worker) => worker.name === name) ?? null;
  }

  async stats(since: number): Promise<Stats> {
    return this.db.transaction(() => {
      const counts = this.sql.queueCounts.all({ since }) as QueueCounts[];
      const times = this.sql.runTimes.all({ since }) as Array<{ queue: string; ms: number }>;
      return summarizeStats(since, countsFromRows(counts), runTimesByQueue(times));
    })();
  }

  async waitFacts(id: string): Promise<WaitFacts | null> {
    const numericId = parseId(id);
    if (numericId === null) return null;
    const now = this.now();
    const facts = this.db.transaction(() => {
      const job = this.detail(numericId);
      if (!job) return null;
      const queue = queueFromRow(this.sql.queue.get({ name: job.queue }) as QueueRow);
      const holders = (where: "queue" | "key", value: string) =>
        (where === "queue" ? this.sql.queueHolders : this.sql.keyHolders)
          .pluck()
          .all(value)
          .map(String);
      const keyHolders = job.concurrencyKey === null ? [] : holders("key", job.concurrencyKey);
      const ahead = this.sql.ahead.pluck().get({
        queue: job.queue,
        now,
        priority: job.priority,
        run_at: job.runAt,
        id: numericId,
      }) as number;
      return {
        job,
        now,
        queue,
        queueHolders: holders("queue", job.queue),
        keyRunning: keyHolders.length,
        keyHolders,
        ahead,
      };
    })();
    return facts ? { ...facts, workers: await this.listWorkers() } : null;
  }

  async putSchedule(spec: ScheduleSpec): Promise<{ schedule: Schedule; created: boolean }> {
    const now = this.now();
    return this.db
      .transaction(() => {
        const existing = this.sql.schedule.get({ name: spec.name }) as ScheduleRow | undefined;
        const row = this.sql.upsertSchedule.get({
          name: spec.name,
          cron: spec.cron,
          timezone: spec.timezone,
          missed: spec.missed,
          job: JSON.stringify(spec.job),
          next_fire_at: firstFiring(spec.cron, spec.timezone, now),
          now,
        }) as ScheduleRow;
        return { schedule: scheduleFromRow(row), created: existing === undefined };
      })
      .immediate();
  }

  async getSchedule(name: string): Promise<Schedule | null> {
    const row = this.sql.schedule.get({ name }) as ScheduleRow | undefined;
    return row ? scheduleFromRow(row) : null;
  }

  async listSchedules(): Promise<Schedule[]> {
    return (this.sql.schedules.all() as ScheduleRow[]).map(scheduleFromRow);
  }

  async pauseSchedule(name: string, paused: boolean): Promise<Schedule | null> {
    const now = this.now();
    const outcome = this.db
      .transaction(() => {
        const row = this.sql.schedule.get({ name }) as ScheduleRow | undefined;
        if (!row) return null;
        // Resuming: what passed while paused was missed, however recent (grace 0).
        const firing =
          !paused && row.paused === 1 && row.next_fire_at !== null && row.next_fire_at <= now
            ? this.applyFiring({ ...row, next_fire_at: row.next_fire_at }, now, 0)
            : null;
        this.sql.setSchedulePaused.run({ name, paused: paused ? 1 : 0 });
        const updated = this.sql.schedule.get({ name }) as ScheduleRow;
        return { schedule: scheduleFromRow(updated), firing };
      })
      .immediate();
    if (outcome?.firing?.jobId) this.emit({ type: "job_available" });
    return outcome?.schedule ?? null;
  }

  async removeSchedule(name: string): Promise<boolean> {
    return this.sql.deleteSchedule.run({ name }).changes > 0;
  }

  async fireSchedules(): Promise<Firing[]> {
    const now = this.now();
    const firings: Firing[] = [];
    for (let i = 0; i < MAX_FIRINGS_PER_CALL; i++) {
      const handled = this.db
        .transaction(() => {
          const row = this.sql.dueSchedule.get({ now }) as
            (ScheduleRow & { next_fire_at: number }) | undefined;
          return row ? { firing: this.applyFiring(row, now, MISSED_GRACE_MS) } : null;
        })
        .immediate();
      if (!handled) break;
      if (handled.firing) firings.push(handled.firing);
    }
    if (firings.some((firing) => firing.jobId !== null)) this.emit({ type: "job_available" });
    return firings;
  }

  /**
   * Handles a schedule's due firing inside the caller's transaction: moves its next firing
   * on with a compare-and-set, and only if that changed the row submits the firing's job.
   * Null when another party had already handled the firing.
   */
  private applyFiring(
    row: ScheduleRow & { next_fire_at: number },
    now: number,
    graceMs: number,
  ): Firing | null {
    const { plan, spec, error } = firingOf(row, now, graceMs);
    const moved = this.sql.advanceSchedule.run({
      name: row.name,
      due: row.next_fire_at,
      next: plan.nextFireAt,
      fired: plan.jobFor,
    });
    if (moved.changes === 0) return null;
    let jobId: string | null = null;
    if (spec) {
      const { job } = this.insertJob(spec);
      this.sql.setScheduleJob.run({ name: row.name, job: Number(job.id) });
      jobId = job.id;
    }
    return { schedule: row.name, at: row.next_fire_at, missed: plan.missed, jobId, error };
  }

  async cancelRequests(workerId: string): Promise<Lease[]> {
    const rows = this.sql.cancelRequests.all({ worker: workerId }) as Array<{
      id: number;
      attempt: number;
    }>;
    return rows.map((row) => ({ jobId: String(row.id), attempt: row.attempt, workerId }));
  }

  async cancel(id: string): Promise<JobDetail | null> {
    const numericId = parseId(id);
    if (numericId === null) return null;
    const now = this.now();
    const outcome = this.db
      .transaction(() => {
        const row = this.sql.byId.get(numericId) as JobRow | undefined;
        if (!row) return null;
        let change: StoreChange | null = null;
        if (row.state === "pending" || row.state === "blocked") {
          this.sql.cancelWaiting.run({ id: numericId, now });
          change = { type: "job_finished", jobId: id };
        } else if (row.state === "running" && row.cancel_requested === 0) {
          this.sql.requestCancel.run({ id: numericId });
          change = { type: "cancel_requested", jobId: id };
        }
        return { job: this.detail(numericId), change };
      })
      .immediate();
    if (!outcome) return null;
    if (outcome.change) this.emit(outcome.change);
    return outcome.job;
  }

  async reapExpired(): Promise<number> {
    const now = this.now();
    const reaped = this.db
      .transaction(() => {
        const expired = this.sql.expired.all({ now }) as JobRow[];
        const finished: StoreChange[] = [];
        for (const row of expired) {
          const lease: Lease = {
            jobId: String(row.id),
            attempt: row.attempt,
            workerId: row.worker_id ?? "",
          };
          const outcome = workerLostOutcome(row.worker_id, row.lease_expires_at ?? now);
          if (this.applyOutcome(row, lease, outcome, now)) {
            finished.push({ type: "job_finished", jobId: lease.jobId });
          }
        }
        return finished;
      })
      .immediate();
    for (const change of reaped) this.emit(change);
    if (reaped.length > 0) this.emit({ type: "job_available" });
    return reaped.length;
  }

  async readLogs(id: string, query: LogQuery): Promise<LogEvent[]> {
    const numericId = parseId(id);
    if (numericId === null) return [];
    const rows = this.sql.readLogs.all({
      id: numericId,
      after: query.after,
      limit: query.limit,
      attempt: query.attempt ?? null,
      stream: query.stream ?? null,
    }) as LogRow[];
    return rows.map(logEventFromRow);
  }

  async pruneLogs(finishedBefore: number, maxJobs: number): Promise<number> {
    const now = this.now();
    return this.db
      .transaction(() => {
        const ids = this.sql.prunable.pluck().all({ before: finishedBefore, limit: maxJobs });
        for (const id of ids) {
          this.sql.deleteLogs.run(id);
          this.sql.markPruned.run({ id, now });
        }
        return ids.length;
      })
      .immediate();
  }

  watch(listener: (change: StoreChange) => void): () => void {
    this.listeners.add(listener);
    if (this.listeners.size === 1) this.startWatching();
    return () => {
      this.listeners.delete(listener);
      if (this.listeners.size === 0) this.stopWatching();
    };
  }

  counters(): StoreCounters {
    return { fencedWrites: this.fencedWrites };
  }

  async ping(): Promise<void> {
    this.db.prepare("SELECT 1").get();
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    this.listeners.clear();
    this.stopWatching();
    // Submits already made are written before the database closes.
    if (this.submitGroup.length > 0) this.flushSubmits();
    this.db.close();
  }

  private finishAttempt(lease: Lease, outcome: AttemptOutcome): FencedAnswer {
    const now = this.now();
    const ended = this.db
      .transaction(() => {
        const row = this.sql.byId.get(Number(lease.jobId)) as JobRow | undefined;
        const next = row && this.applyOutcome(row, lease, outcome, now);
        if (!row || !next) return null;
        const available = next.state === "pending" || this.anyHoldsLimitedSlot([row.id]);
        return { job: this.detail(row.id), available };
      })
      .immediate();
    if (!ended?.job) return this.refused(lease);
    this.emit({ type: "job_finished", jobId: lease.jobId });
    if (ended.available) this.emit({ type: "job_available" });
    return { applied: true, job: ended.job };
  }

  /** Records an attempt's end and moves the job on; null when the lease is not held. */
  private applyOutcome(
    row: OutcomeRow,
    lease: Lease,
    outcome: AttemptOutcome,
    now: number,
  ): NextState | null {
    if (row.state !== "running" || row.attempt !== lease.attempt) return null;
    const next = nextStateOf(row, outcome, now, this.random());
    const failure = next.failure;
    this.sql.finishAttempt.run(
      row.id,
      lease.attempt,
      row.worker_id ?? lease.workerId,
      row.started_at ?? now,
      now,
      outcome.exitCode,
      outcome.signal,
      failure?.reason ?? null,
      failure?.message ?? null,
    );
    this.sql.applyNextState.run({
      id: row.id,
      attempt: lease.attempt,
      state: next.state,
      run_at: next.runAt ?? row.run_at,
      finished_at: next.state === "pending" ? null : now,
      exit_code: outcome.exitCode,
      signal: outcome.signal,
      result: resultColumn(outcome),
      failure_reason: failure?.reason ?? null,
      failure_message: failure?.message ?? null,
    });
    return next;
  }

  private refused(lease: Lease): FencedAnswer {
    this.fencedWrites++;
    const numericId = parseId(lease.jobId);
    return { applied: false, job: numericId === null ? null : this.detail(numericId) };
  }

  private detail(id: number): JobDetail | null {
    const row = this.sql.byId.get(id) as JobRow | undefined;
    if (!row) return null;
    return detailFromRows(row, this.sql.attempts.all(id) as AttemptRow[]);
  }

  private emit(change: StoreChange): void {
    for (const listener of this.listeners) listener(change);
  }

  /**
   * Notices writes by other processes: the file watcher reports a change to the database
   * files at once, and `PRAGMA data_version` (which moves only on other connections'
   * commits) tells a real change from our own writes. The timer is the safety net.
   */
  private startWatching(): void {
    if (this.path === ":memory:") return;
    this.dataVersion = this.readDataVersion();
    const file = basename(this.path);
    try {
      this.watcher = watch(dirname(this.path), (_event, name) => {
        if (name === null || name.startsWith(file)) this.scheduleCheck();
      });
      this.watcher.on("error", () => this.stopFileWatcher());
    } catch {
      this.watcher = null; // the poll below still notices changes
    }
    this.pollTimer = setInterval(() => this.scheduleCheck(), this.pollIntervalMs);
    this.pollTimer.unref();
  }

  private stopWatching(): void {
    this.stopFileWatcher();
    if (this.pollTimer) clearInterval(this.pollTimer);
    this.pollTimer = null;
  }

  private stopFileWatcher(): void {
    this.watcher?.close();
    this.watcher = null;
  }

  private scheduleCheck(): void {
    if (this.checkScheduled || this.closed) return;
    this.checkScheduled = true;
    setImmediate(() => {
      this.checkScheduled = false;
      if (this.closed || this.listeners.size === 0) return;
      const version = this.readDataVersion();
      if (version === this.dataVersion) return;
      this.dataVersion = version;
      this.emit({ type: "external" });
    });
  }

  private readDataVersion(): number {
    return this.db.pragma("data_version", { simple: true }) as number;
  }
}

/** A row of `claimCandidates`. */
function candidateFromValues(values: unknown[]): CandidateRow {
  return {
    id: values[0] as number,
    queue: values[1] as string,
    cpus: values[2] as number,
    memory_mb: values[3] as number | null,
    concurrency_key: values[4] as string | null,
    concurrency_limit: values[5] as number,
    queue_limit: values[6] as number | null,
    queue_running: values[7] as number | null,
    key_running: values[8] as number | null,
  };
}

/** A row of `outcomeRow`, in the order of OUTCOME_COLUMNS. */
function outcomeFromValues(values: unknown[]): OutcomeRow {
  return {
    id: values[0] as number,
    state: values[1] as string,
    attempt: values[2] as number,
    attempts_used: values[3] as number,
    max_attempts: values[4] as number,
    backoff_base_ms: values[5] as number,
    backoff_max_ms: values[6] as number,
    cancel_requested: values[7] as number,
    run_at: values[8] as number,
    worker_id: values[9] as string | null,
    started_at: values[10] as number | null,
  };
}

function leaseKey(id: number | null, attempt: number, workerId: string): string {
  return `${id}:${attempt}:${workerId}`;
}

function fence(lease: Lease): { id: number; attempt: number; worker: string } {
  return { id: Number(lease.jobId), attempt: lease.attempt, worker: lease.workerId };
}

function parseId(id: string): number | null {
  if (!/^[1-9]\d{0,15}$/.test(id)) return null;
  return Number(id);
}

const INSERT_LOGS =
  "INSERT INTO job_logs (job_id, seq, attempt, stream, line, ts, kind, data, cut) VALUES";
const LOG_ROW = "(?, ?, ?, ?, ?, ?, ?, ?, ?)";
const LOG_COLUMNS = 9;
const LOG_ROWS_PER_INSERT = 100;
const JOB_ROWS_PER_INSERT = 100;

/** Every statement the store runs, prepared once. */
function prepareStatements(db: Database.Database) {
  const held = "id = @id AND attempt = @attempt AND worker_id = @worker AND state = 'running'";
  const jobJson = `json_object(${JOB_ROW_COLUMNS.map((column) => `'${column}', ${column}`).join(", ")})`;
  const markRunning = `state = 'running', attempt = attempt + 1, attempts_used = attempts_used + 1,
    worker_id = @worker, lease_expires_at = @expires, started_at = @now, finished_at = NULL,
    output_offsets = NULL, exit_code = NULL, signal = NULL, failure_reason = NULL,
    failure_message = NULL`;
  return {
    byId: db.prepare("SELECT * FROM jobs WHERE id = ?"),
    byIdempotencyKey: db.prepare(`SELECT ${jobJson} FROM jobs WHERE idempotency_key = ?`).pluck(),
    attempts: db.prepare(
      "SELECT attempt, worker_id, started_at, finished_at, exit_code, signal, failure_reason," +
        " failure_message FROM attempts WHERE job_id = ? ORDER BY attempt",
    ),
    // Positional: binding 17 values by name costs more than the row's insert (2.5 of 9 µs).
    insert: db.prepare(`
      INSERT INTO jobs (${NEW_JOB_COLUMNS.join(", ")}, state)
      VALUES (${NEW_JOB_COLUMNS.map(() => "?").join(", ")}, 'pending')`),
    list: db.prepare(`
      SELECT * FROM jobs
      WHERE (@state IS NULL OR state = @state)
        AND (@queue IS NULL OR queue = @queue)
        AND (@cursor IS NULL OR id < @cursor)
      ORDER BY id DESC LIMIT @limit`),
    // Every queue with settings or jobs, with its counts, in time that grows with the
    // queues and the jobs pending or running, not with the jobs the queues ever had: the
    // queue names by a skip scan of jobs_queue (one seek per name), the counts from the
    // partial indexes of pending and running jobs.
    queues: db.prepare(`
      WITH RECURSIVE used (name) AS (
        SELECT min(queue) FROM jobs
        UNION ALL
        SELECT (SELECT min(queue) FROM jobs WHERE queue > used.name) FROM used
        WHERE used.name IS NOT NULL),
      pending AS (
        SELECT queue AS name, count(*) AS n FROM jobs INDEXED BY jobs_ready
        WHERE state = 'pending' GROUP BY queue),
      running AS (
        SELECT queue AS name, count(*) AS n FROM jobs INDEXED BY jobs_running_queue
        WHERE state = 'running' GROUP BY queue)
      SELECT name, COALESCE(q.paused, 0) AS paused, q.max_running,
        COALESCE(running.n, 0) AS running, COALESCE(pending.n, 0) AS pending
      FROM (SELECT name FROM queues UNION SELECT name FROM used WHERE name IS NOT NULL)
      LEFT JOIN queues AS q USING (name)
      LEFT JOIN pending USING (name)
      LEFT JOIN running USING (name)
      ORDER BY name`),
    queue: db.prepare(`
      SELECT @name AS name, COALESCE(q.paused, 0) AS paused, q.max_running,
        (SELECT count(*) FROM jobs INDEXED BY jobs_running_queue
          WHERE queue = @name AND state = 'running') AS running,
        (SELECT count(*) FROM jobs INDEXED BY jobs_ready
          WHERE queue = @name AND state = 'pending') AS pending
      FROM (SELECT 1) LEFT JOIN queues AS q ON q.name = @name`),
    upsertQueue: db.prepare(`
      INSERT INTO queues (name, paused, max_running) VALUES (@name, COALESCE(@paused, 0), @max_running)
      ON CONFLICT (name) DO UPDATE SET
        paused = COALESCE(@paused, paused),
        max_running = CASE WHEN @set_max = 1 THEN @max_running ELSE max_running END`),
    // Highest priority, then earliest runAt, then oldest, among the jobs that fit, a window
    // at a time, with what fitting them in order needs. Claims are serialized by SQLite's
    // write lock, so the running counts are exact. Raw, in the order candidateFromValues reads.
    claimCandidates: db
      .prepare(
        `
      SELECT id, queue, cpus, memory_mb, concurrency_key, concurrency_limit,
        (SELECT q.max_running FROM queues AS q WHERE q.name = j.queue) AS queue_limit,
        CASE WHEN EXISTS (SELECT 1 FROM queues AS q
            WHERE q.name = j.queue AND q.max_running IS NOT NULL)
          THEN (SELECT count(*) FROM jobs AS r WHERE r.state = 'running' AND r.queue = j.queue)
        END AS queue_running,
        CASE WHEN j.concurrency_key IS NOT NULL
          THEN (SELECT count(*) FROM jobs AS r
            WHERE r.state = 'running' AND r.concurrency_key = j.concurrency_key)
        END AS key_running
      FROM jobs AS j INDEXED BY jobs_ready
      WHERE state = 'pending' AND run_at <= @now
        AND (@all_queues = 1 OR queue IN (SELECT value FROM json_each(@queues)))
        AND kind IN (SELECT value FROM json_each(@kinds))
        AND (kind <> 'handler' OR @any_handler = 1
          OR handler IN (SELECT value FROM json_each(@handlers))
          -- Queued by a Baton older than the handler column, still running after the migration.
          OR (handler IS NULL
            AND json_extract(spec, '$.handler') IN (SELECT value FROM json_each(@handlers))))
        AND cpus <= @free_cpus
        AND (memory_mb IS NULL OR @free_memory IS NULL OR memory_mb <= @free_memory)
        AND ${queueAdmits("")}
        AND ${keyAdmits("")}
      ORDER BY priority, run_at, id
      LIMIT @limit`,
      )
      .raw(),
    holdLimitedSlots: db
      .prepare(
        `SELECT EXISTS (SELECT 1 FROM jobs AS j
           WHERE j.id IN (SELECT value FROM json_each(?)) AND ${holdsLimitedSlot("", "j")})`,
      )
      .pluck(),
    // Raw: arrays are read several times faster than objects (see outcomeFromValues).
    outcomeRows: db
      .prepare(`SELECT ${OUTCOME_COLUMNS} FROM jobs WHERE id IN (SELECT value FROM json_each(?))`)
      .raw(),
    // One completion, values bound by position: a statement per job, run from a loop, costs
    // less than one statement reading every job's values out of JSON (9 against 13 µs a job).
    // (+state: look the job up by id, not by state.)
    completeJob: db.prepare(`
      UPDATE jobs SET state = ?, run_at = ?, finished_at = ?, exit_code = ?, signal = ?,
        result = ?, failure_reason = ?, failure_message = ?,
        worker_id = CASE WHEN ? = 'pending' THEN NULL ELSE worker_id END,
        lease_expires_at = NULL
      WHERE id = ? AND attempt = ? AND +state = 'running'`),
    // Returns the leased rows, sparing a second lookup of each; raw, as arrays are read
    // faster than objects or JSON (13 against 16 µs a job, update included).
    markRunningMany: db
      .prepare(
        `UPDATE jobs SET ${markRunning}
         WHERE id IN (SELECT value FROM json_each(@ids)) AND state = 'pending'
         RETURNING ${JOB_ROW_COLUMNS.join(", ")}`,
      )
      .raw(),
    // Leases as a JSON array of [id, attempt, worker] (+state: look jobs up by id).
    extendLeases: db.prepare(`
      UPDATE jobs SET lease_expires_at = @expires
      FROM (SELECT value ->> 0 AS id, value ->> 1 AS attempt, value ->> 2 AS worker
        FROM json_each(@leases)) AS l
      WHERE jobs.id = l.id AND jobs.attempt = l.attempt AND jobs.worker_id = l.worker
        AND +jobs.state = 'running'`),
    heldLeases: db
      .prepare(
        `SELECT id, attempt, worker_id, cancel_requested FROM jobs
         WHERE id IN (SELECT value ->> 0 FROM json_each(?)) AND +state = 'running'`,
      )
      .raw(),
    heartbeat: db.prepare(
      `UPDATE jobs SET lease_expires_at = @expires WHERE ${held} RETURNING cancel_requested`,
    ),
    fencedLogSeq: db.prepare(`SELECT log_seq FROM jobs WHERE ${held}`),
    logState: db.prepare(
      `SELECT log_seq, log_bytes, max_log_bytes, log_dropped_lines FROM jobs WHERE ${held}`,
    ),
    updateLogState: db.prepare(`
      UPDATE jobs SET log_seq = @seq, log_bytes = @bytes,
        log_dropped_lines = log_dropped_lines + @dropped_lines,
        log_dropped_bytes = log_dropped_bytes + @dropped_bytes,
        progress = COALESCE(@progress, progress),
        output_offsets = COALESCE(@offsets, output_offsets)
      WHERE id = @id`),
    insertLog: db.prepare(`${INSERT_LOGS} ${LOG_ROW}`),
    insertLogs: db.prepare(
      `${INSERT_LOGS} ${Array.from({ length: LOG_ROWS_PER_INSERT }, () => LOG_ROW).join(", ")}`,
    ),
    // An attempt's row, written when it ends (values bound by position, in this order);
    // one written at its start by a Baton before version 9 is completed.
    finishAttempt: db.prepare(`
      INSERT INTO attempts (job_id, attempt, worker_id, started_at, finished_at, exit_code,
        signal, failure_reason, failure_message)
      VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)
      ON CONFLICT (job_id, attempt) DO UPDATE SET finished_at = excluded.finished_at,
        exit_code = excluded.exit_code, signal = excluded.signal,
        failure_reason = excluded.failure_reason, failure_message = excluded.failure_message`),
    applyNextState: db.prepare(`
      UPDATE jobs SET state = @state, run_at = @run_at, finished_at = @finished_at,
        exit_code = @exit_code, signal = @signal, result = @result,
        failure_reason = @failure_reason, failure_message = @failure_message,
        worker_id = CASE WHEN @state = 'pending' THEN NULL ELSE worker_id END,
        lease_expires_at = NULL
      WHERE id = @id AND attempt = @attempt AND state = 'running'`),
    release: db.prepare(`
      UPDATE jobs SET state = 'pending', attempts_used = attempts_used - 1, worker_id = NULL,
        lease_expires_at = NULL, started_at = NULL
      WHERE ${held}
      RETURNING *`),
    heldBy: db.prepare("SELECT * FROM jobs WHERE worker_id = @worker AND state = 'running'"),
    cancelRequests: db.prepare(
      "SELECT id, attempt FROM jobs WHERE worker_id = @worker AND state = 'running' AND cancel_requested = 1",
    ),
    cancelWaiting: db.prepare(`
      UPDATE jobs SET state = 'cancelled', finished_at = @now, cancel_requested = 1,
        failure_reason = 'cancelled', failure_message = 'cancelled by request'
      WHERE id = @id AND state IN ('pending', 'blocked')`),
    requestCancel: db.prepare(
      "UPDATE jobs SET cancel_requested = 1 WHERE id = @id AND state = 'running'",
    ),
    expired: db.prepare(
      "SELECT * FROM jobs WHERE state = 'running' AND lease_expires_at < @now ORDER BY lease_expires_at",
    ),
    prunable: db.prepare(`
      SELECT id FROM jobs INDEXED BY jobs_finished
      WHERE finished_at IS NOT NULL AND logs_pruned_at IS NULL AND finished_at < @before
        AND state IN ('succeeded', 'failed', 'cancelled')
      LIMIT @limit`),
    deleteLogs: db.prepare("DELETE FROM job_logs WHERE job_id = ?"),
    markPruned: db.prepare("UPDATE jobs SET logs_pruned_at = @now WHERE id = @id"),
    releaseIdempotencyKey: db.prepare("UPDATE jobs SET idempotency_key = NULL WHERE id = ?"),
    retryableInQueue: db.prepare(`
      SELECT * FROM jobs
      WHERE state IN (SELECT value FROM json_each(@states)) AND (@queue IS NULL OR queue = @queue)
      ORDER BY id`),
    // A fresh set of attempts; the history (attempts, logs) stays.
    requeue: db.prepare(`
      UPDATE jobs SET state = 'pending', attempts_used = 0, run_at = @now, finished_at = NULL,
        exit_code = NULL, signal = NULL, result = NULL, failure_reason = NULL,
        failure_message = NULL, cancel_requested = 0, worker_id = NULL, lease_expires_at = NULL,
        progress = NULL, replays = @replays
      WHERE id = @id AND state = @state`),
    registerWorker: db.prepare(`
      INSERT INTO workers (name, host, pid, queues, runs, concurrency, cpus, memory_mb, ttl_ms,
        drain, started_at, last_seen_at)
      VALUES (@name, @host, @pid, @queues, @runs, @concurrency, @cpus, @memory_mb, @ttl_ms, 0,
        @now, @now)
      ON CONFLICT (name) DO UPDATE SET host = excluded.host, pid = excluded.pid,
        queues = excluded.queues, runs = excluded.runs, concurrency = excluded.concurrency, cpus = excluded.cpus,
        memory_mb = excluded.memory_mb, ttl_ms = excluded.ttl_ms, drain = 0,
        started_at = excluded.started_at, last_seen_at = excluded.last_seen_at, stopped_at = NULL
      RETURNING concurrency, drain`),
    beatWorker: db.prepare(`
      INSERT INTO workers (name, host, pid, queues, runs, concurrency, cpus, memory_mb, ttl_ms,
        drain, started_at, last_seen_at)
      VALUES (@name, @host, @pid, @queues, @runs, @concurrency, @cpus, @memory_mb, @ttl_ms, 0,
        @now, @now)
      ON CONFLICT (name) DO UPDATE SET last_seen_at = excluded.last_seen_at
      RETURNING concurrency, drain`),
    stopWorker: db.prepare("UPDATE workers SET stopped_at = @now WHERE name = @name"),
    workers: db.prepare("SELECT * FROM workers WHERE last_seen_at >= @since ORDER BY name"),
    runningJobs: db.prepare(
      "SELECT id, worker_id, cpus, memory_mb FROM jobs WHERE state = 'running' ORDER BY id",
    ),
    updateWorker: db.prepare(`
      UPDATE workers SET concurrency = COALESCE(@concurrency, concurrency),
        drain = COALESCE(@drain, drain)
      WHERE name = @name`),
    queueCounts: db.prepare(queueCountsSql("jobs", "@since")),
    runTimes: db.prepare(runTimesSql("jobs", "@since")),
    queueHolders: db.prepare(
      "SELECT id FROM jobs WHERE state = 'running' AND queue = ? ORDER BY id LIMIT 100",
    ),
    keyHolders: db.prepare(
      "SELECT id FROM jobs WHERE state = 'running' AND concurrency_key = ? ORDER BY id",
    ),
    // Ready jobs of the queue that the claim order puts first.
    ahead: db.prepare(`
      SELECT count(*) FROM jobs INDEXED BY jobs_ready
      WHERE state = 'pending' AND queue = @queue AND run_at <= @now
        AND (priority < @priority OR (priority = @priority
          AND (run_at < @run_at OR (run_at = @run_at AND id < @id))))`),
    schedule: db.prepare("SELECT * FROM schedules WHERE name = @name"),
    schedules: db.prepare("SELECT * FROM schedules ORDER BY name"),
    // A replaced schedule keeps its next firing unless its expression or time zone changed.
    upsertSchedule: db.prepare(`
      INSERT INTO schedules (name, cron, timezone, missed, job, next_fire_at, created_at)
      VALUES (@name, @cron, @timezone, @missed, @job, @next_fire_at, @now)
      ON CONFLICT (name) DO UPDATE SET
        next_fire_at = CASE WHEN cron = excluded.cron AND timezone = excluded.timezone
          THEN next_fire_at ELSE excluded.next_fire_at END,
        cron = excluded.cron, timezone = excluded.timezone, missed = excluded.missed,
        job = excluded.job
      RETURNING *`),
    setSchedulePaused: db.prepare("UPDATE schedules SET paused = @paused WHERE name = @name"),
    deleteSchedule: db.prepare("DELETE FROM schedules WHERE name = @name"),
    dueSchedule: db.prepare(`
      SELECT * FROM schedules INDEXED BY schedules_due
      WHERE paused = 0 AND next_fire_at <= @now
      ORDER BY next_fire_at LIMIT 1`),
    // The compare-and-set that makes a firing happen once: only the party that moves
    // next_fire_at on from the due time it read creates the job.
    advanceSchedule: db.prepare(`
      UPDATE schedules SET next_fire_at = @next,
        last_fired_at = COALESCE(@fired, last_fired_at)
      WHERE name = @name AND next_fire_at = @due`),
    setScheduleJob: db.prepare("UPDATE schedules SET last_job_id = @job WHERE name = @name"),
    readLogs: db.prepare(`
      SELECT seq, attempt, stream, line, ts, kind, data, cut FROM job_logs
      WHERE job_id = @id AND seq > @after
        AND (@attempt IS NULL OR attempt = @attempt)
        AND (@stream IS NULL OR stream = @stream)
      ORDER BY seq LIMIT @limit`),
  };
}
