import pg from "pg";
import type { WaitFacts } from "../../core/explain.js";
import {
  DEFAULT_IDEMPOTENCY_RETENTION_MS,
  idempotencyKeyExpired,
  type JobDetail,
  type JobSpec,
  type JobState,
} from "../../core/job.js";
import type { WorkerBeat, WorkerChange, WorkerInfo, WorkerOrders } from "../../core/pool.js";
import { type QueueCounts, type Stats, summarizeStats } from "../../core/stats.js";
import { type LogEvent, type OutputLine, type OutputOffsets } from "../../core/logEvent.js";
import { type AttemptOutcome, workerLostOutcome } from "../../core/outcome.js";
import { MISSED_GRACE_MS, type Schedule, type ScheduleSpec } from "../../core/schedule.js";
import { type LogState, planAppend } from "../appendPlan.js";
import {
  type AttemptRow,
  countsFromRows,
  detailFromRows,
  heldLeaseFromRow,
  type JobRow,
  jobFromRow,
  type LogRow,
  logEventFromRow,
  queueFromRow,
  type QueueRow,
  NEW_JOB_COLUMNS,
  newJobColumns,
  nextStateOf,
  OUTCOME_COLUMNS,
  type OutcomeRow,
  pendingJob,
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
  unusedCapacity,
} from "../claimRules.js";
import { GroupCommit } from "../../groupCommit.js";
import { announceCompletions, type CompletionsWritten, decideCompletions } from "../completions.js";
import { firingOf, firstFiring, scheduleFromRow, type ScheduleRow } from "../scheduleRows.js";
import { migrate } from "./migrations.js";

export interface PostgresStoreOptions {
  url: string;
  /** Schema holding Baton's tables (created and migrated on open). */
  schema?: string;
  /** Connections in the pool. */
  maxConnections?: number;
  now?: () => number;
  random?: () => number;
  /** A finished job keeps its idempotency key this long; after it, the key is free again. */
  idempotencyRetentionMs?: number;
  /** Called once per failure streak of the notification connection, and when it recovers. */
  onListenerError?: (error: Error | null, failures: number) => void;
}

const SHUTDOWN_REASON = "shutdown";
/** Firings one `fireSchedules` call handles at most; the next call goes on. */
const MAX_FIRINGS_PER_CALL = 1_000;
/** Windows of candidates one batch claim reads at most (each one takes or rules out some). */
const MAX_CLAIM_WINDOWS = 20;
/**
 * Transactions one locked claim may start: one more after it met a queue's or key's lock held
 * by another claimer, then waiting for that lock too; after that a busy one is left.
 */
const MAX_LOCKED_CLAIM_TRIES = 2;

/** Queues and keys, by name, whose locks a claim takes. */
interface LimitedNames {
  queues: string[];
  keys: string[];
}

/** A claim met these queues' or keys' locks held by another claimer: it is undone and tried again. */
class LocksBusy extends Error {
  constructor(readonly names: LimitedNames) {
    super(`locks busy: queues ${names.queues.join(", ")}; keys ${names.keys.join(", ")}`);
  }
}
/**
 * The transactions of claims and batch writes, planned by their indexes: claims walk
 * jobs_ready in claim order and every other statement reaches jobs by id or key. Without fresh
 * statistics (a new table, or ones taken while few jobs were pending) the planner believes
 * the table small and sorts every pending job instead, for every claim (30 ms with 13,000
 * pending), or scans the table to update a batch by id. Sorts and sequential scans are
 * disabled for these transactions so that the index plans are the only ones. JIT is off too:
 * a plan that must still sort a few rows costs as much as a disabled sort, which is enough
 * for the server to compile it first (300 ms, for a statement that takes one).
 */
const BY_INDEX = { enable_sort: "off", enable_seqscan: "off", jit: "off" };
const BEGIN_BY_INDEX = `BEGIN; ${Object.entries(BY_INDEX)
  .map(([name, value]) => `SET LOCAL ${name} = ${value}`)
  .join("; ")}`;

/**
 * Finished jobs of one completeBatch are announced a few hundred per NOTIFY (a payload must
 * stay under 8,000 bytes), not one each: a notification costs the server about as much as
 * the job's update. Listeners hear them as one `job_finished` each.
 */
const FINISHED_PER_NOTIFICATION = 200;
interface FinishedBatch {
  type: "jobs_finished";
  jobIds: string[];
}

const SCHEMA_NAME = /^[a-z_][a-z0-9_]{0,39}$/;
// BIGINT columns hold epoch milliseconds and ids, all well within a double's exact range.
const INT8_OID = 20;
const types = {
  getTypeParser: ((oid: number, format?: "text" | "binary"): unknown =>
    oid === INT8_OID
      ? Number
      : (pg.types.getTypeParser as (oid: number, format?: string) => unknown)(
          oid,
          format,
        )) as typeof pg.types.getTypeParser,
};

/**
 * The store for many servers and workers on many machines. Claims take the most urgent
 * fitting job with `FOR UPDATE SKIP LOCKED` in one statement, so concurrent workers never
 * wait on each other's candidates; every state change is one transaction; changes are
 * announced with NOTIFY on a channel of the schema, so idle workers wake at once and a
 * cancel reaches the owning worker at once. Statements are named, so each connection
 * prepares them once.
 */
export class PostgresStore implements Store {
  private readonly pool: pg.Pool;
  /**
   * Connections whose planner may use indexes only (as BEGIN_BY_INDEX sets in a transaction),
   * for the claim that is one statement and needs no transaction around it.
   */
  private readonly byIndexPool: pg.Pool;
  private readonly schema: string;
  private readonly channel: string;
  private readonly now: () => number;
  private readonly random: () => number;
  private readonly listeners = new Set<(change: StoreChange) => void>();
  private readonly sql: ReturnType<typeof statements>;
  private listener: pg.Client | null = null;
  /** Whether the LISTEN connection is up (from its LISTEN until it fails or is stopped). */
  private listening = false;
  /**
   * The server processes of this store's connections. What they commit, the store tells
   * its own listeners itself (work available aside: see emitAvailable): their NOTIFYs,
   * heard back, would tell them twice.
   */
  private readonly ownBackends = new Set<number>();
  private listenerFailures = 0;
  private reconnectTimer: NodeJS.Timeout | null = null;
  private fencedWrites = 0;
  private closed = false;
  /** Submits written together (see `submit`). */
  private readonly submits = new GroupCommit((specs: JobSpec[]) => this.submitBatch(specs), {
    onFailure: "retry-alone",
  });
  /** Statements run alone, each its own transaction. */
  private readonly autocommit: TxClient = {
    query: (statement, values) => this.query(statement, values),
  };

  private constructor(private readonly options: PostgresStoreOptions) {
    this.schema = options.schema ?? "baton";
    this.channel = `${this.schema}_changes`;
    this.now = options.now ?? Date.now;
    this.random = options.random ?? Math.random;
    this.pool = new pg.Pool({
      connectionString: options.url,
      max: options.maxConnections ?? 10,
      connectionTimeoutMillis: 5_000,
      types,
    });
    this.byIndexPool = new pg.Pool({
      connectionString: options.url,
      max: 2,
      connectionTimeoutMillis: 5_000,
      types,
      options: Object.entries(BY_INDEX)
        .map(([name, value]) => `-c ${name}=${value}`)
        .join(" "),
    });
    for (const pool of [this.pool, this.byIndexPool]) {
      // An idle connection that breaks (database restart) must not take the process with it.
      pool.on("error", () => {});
      pool.on("connect", (client) => this.ownBackends.add(backendPid(client)));
      pool.on("remove", (client) => this.ownBackends.delete(backendPid(client)));
    }
    this.sql = statements(this.schema);
  }

  /** Connects, migrates the schema (once, whoever else starts at the same time) and opens. */
  static async open(options: PostgresStoreOptions): Promise<PostgresStore> {
    const schema = options.schema ?? "baton";
    if (!SCHEMA_NAME.test(schema)) {
      throw new Error(`schema ${JSON.stringify(schema)}: use lower-case letters, digits and _`);
    }
    const store = new PostgresStore(options);
    const client = await store.pool.connect();
    try {
      await migrate(client, schema);
    } catch (error) {
      client.release();
      await Promise.all([store.pool.end(), store.byIndexPool.end()]);
      throw error;
    }
    client.release();
    return store;
  }

  /**
   * Submits arriving while another group is being written wait for it, then go together in
   * one transaction (one commit, one WAL flush). If the group fails, each is tried alone, so
   * that every caller gets its own answer or error; order is kept, so two submits with one
   * idempotency key still make one job.
   */
  submit(spec: JobSpec): Promise<{ job: JobDetail; created: boolean }> {
    return this.submits.call(spec);
  }

  /**
   * One multi-row INSERT (unnest) with ON CONFLICT DO NOTHING on the idempotency key: ids are
   * drawn in the order given, so the jobs keep their order; keys whose job finished longer
   * ago than the retention window are freed first; a job not inserted because its key is
   * taken is answered with the job holding the key (possibly one earlier in the batch).
   */
  async submitBatch(
    specs: readonly JobSpec[],
  ): Promise<Array<{ job: JobDetail; created: boolean }>> {
    if (specs.length === 0) return [];
    const now = this.now();
    const columns = specs.map((spec) => newJobColumns(spec, now));
    const keys = columns.flatMap((c) => (c.idempotency_key === null ? [] : [c.idempotency_key]));
    const retention = this.options.idempotencyRetentionMs ?? DEFAULT_IDEMPOTENCY_RETENTION_MS;
    const run = async (client: TxClient) => {
      if (keys.length > 0) await client.query(this.sql.releaseExpiredKeys, [keys, now - retention]);
      const { rows } = await client.query<{ id: number; created: boolean }>(this.sql.insertMany, [
        ...NEW_JOB_COLUMNS.map((name) => columns.map((column) => column[name])),
        this.channel,
      ]);
      const holders = new Map<string, JobRow>();
      if (rows.some((row) => !row.created)) {
        const taken = await client.query<JobRow>(this.sql.byIdempotencyKeys, [keys]);
        for (const row of taken.rows)
          if (row.idempotency_key) holders.set(row.idempotency_key, row);
      }
      return rows.map(({ id, created }, i) => {
        const spec = specs[i] as JobSpec;
        if (created) return { job: pendingJob(id, spec, now), created };
        const holder = holders.get(spec.idempotencyKey ?? "");
        if (!holder) throw new Error(`job with idempotency key ${spec.idempotencyKey} vanished`);
        return { job: detailFromRows(holder, []), created };
      });
    };
    // Without keys the INSERT is the whole work, atomic on its own.
    const answers =
      keys.length > 0 ? await this.transaction(run, BEGIN_BY_INDEX) : await run(this.autocommit);
    if (answers.some((answer) => answer.created)) this.emitAvailable();
    return answers;
  }

  /** Inserts one job in the caller's transaction; the existing one for a taken key. */
  private async insertJob(
    client: TxClient,
    spec: JobSpec,
    now: number,
  ): Promise<{ row: JobRow; created: boolean }> {
    const columns = newJobColumns(spec, now);
    const inserted = await client.query<JobRow>(this.sql.insert, [
      ...NEW_JOB_COLUMNS.map((name) => columns[name]),
      this.channel,
    ]);
    const row = inserted.rows[0];
    if (row) return { row, created: true };
    // The idempotency key is taken: the job holding it is the answer, unless it finished
    // longer ago than the retention window; then the key is freed for a new job.
    const existing = await client.query<JobRow>(this.sql.byIdempotencyKey, [spec.idempotencyKey]);
    const found = existing.rows[0];
    if (!found) throw new Error(`job with idempotency key ${spec.idempotencyKey} vanished`);
    const retention = this.options.idempotencyRetentionMs ?? DEFAULT_IDEMPOTENCY_RETENTION_MS;
    if (!idempotencyKeyExpired(found.finished_at, now, retention)) {
      return { row: found, created: false };
    }
    await client.query(this.sql.releaseIdempotencyKey, [found.id]);
    return this.insertJob(client, spec, now);
  }

  async get(id: string): Promise<JobDetail | null> {
    const numericId = parseId(id);
    if (numericId === null) return null;
    return this.detail(this.pool, numericId);
  }

  async list(query: ListQuery): Promise<JobPage> {
    const cursor = query.cursor === undefined ? null : parseId(query.cursor);
    const { rows } = await this.query<JobRow>(this.sql.list, [
      query.state ?? null,
      query.queue ?? null,
      cursor,
      query.limit + 1,
    ]);
    const more = rows.length > query.limit;
    const page = rows.slice(0, query.limit).map(jobFromRow);
    return { jobs: page, nextCursor: more ? (page.at(-1)?.id ?? null) : null };
  }

  /**
   * The most urgent admissible job, as a batch of one: one statement, its own transaction,
   * when that job has no queue limit or concurrency key; otherwise the locked claim of
   * `claimWindows`, which counts its queue's or key's running jobs under their lock first.
   */
  async claim(request: ClaimRequest): Promise<Claim | null> {
    const [claim] = await this.claimBatch(request, 1);
    return claim ?? null;
  }

  async listQueues(): Promise<QueueInfo[]> {
    const { rows } = await this.query<QueueRow>(this.sql.queues, []);
    return rows.map(queueFromRow);
  }

  async updateQueue(name: string, change: QueueChange): Promise<QueueInfo> {
    const info = await this.transaction(async (client) => {
      await client.query(this.sql.upsertQueue, [
        name,
        change.paused === undefined ? null : change.paused ? 1 : 0,
        change.maxRunning ?? null,
        change.maxRunning !== undefined,
      ]);
      await this.notify(client, { type: "job_available" });
      const { rows } = await client.query<QueueRow>(this.sql.queue, [name]);
      return queueFromRow(rows[0] as QueueRow);
    });
    this.emitAvailable();
    return info;
  }

  async retry(selector: RetrySelector): Promise<JobDetail[]> {
    const now = this.now();
    const jobs = await this.transaction(async (client) => {
      const { rows } =
        "ids" in selector
          ? await client.query<JobRow>(this.sql.retryableByIds, [
              selector.states,
              selector.ids.flatMap((id) => parseId(id) ?? []),
            ])
          : await client.query<JobRow>(this.sql.retryableInQueue, [
              selector.states,
              selector.queue,
            ]);
      const moved: JobDetail[] = [];
      for (const row of rows) {
        const replays = replaysColumn(row, {
          at: now,
          afterAttempt: row.attempt,
          failure: jobFromRow(row).failure,
        });
        await client.query(this.sql.requeue, [row.id, now, replays]);
        const job = await this.detail(client, row.id);
        if (job) moved.push(job);
      }
      if (moved.length > 0) await this.notify(client, { type: "job_available" });
      return moved;
    });
    if (jobs.length > 0) this.emitAvailable();
    return jobs;
  }

  async beatWorker(beat: WorkerBeat): Promise<WorkerOrders> {
    const { rows } = await this.query<{ concurrency: number; drain: number }>(
      beat.fresh ? this.sql.registerWorker : this.sql.beatWorker,
      [
        beat.name,
        beat.host,
        beat.pid,
        beat.queues === null ? null : JSON.stringify(beat.queues),
        beat.concurrency,
        beat.cpus,
        beat.memoryMb,
        beat.ttlMs,
        this.now(),
        beat.runs === null ? null : JSON.stringify(beat.runs),
      ],
    );
    const row = rows[0] as { concurrency: number; drain: number };
    return { concurrency: row.concurrency, drain: row.drain === 1 };
  }

  async stopWorker(name: string): Promise<void> {
    await this.query(this.sql.stopWorker, [name, this.now()]);
  }

  async listWorkers(): Promise<WorkerInfo[]> {
    const now = this.now();
    const [workers, running] = await Promise.all([
      this.query<WorkerRow>(this.sql.workers, [now - WORKER_LISTING_MS]),
      this.query<RunningRow>(this.sql.runningJobs, []),
    ]);
    return workersFromRows(workers.rows, running.rows, now);
  }

  async updateWorker(name: string, change: WorkerChange): Promise<WorkerInfo | null> {
    const changed = await this.query(this.sql.updateWorker, [
      name,
      change.concurrency ?? null,
      change.drain === undefined ? null : change.drain ? 1 : 0,
    ]);
    if (changed.rowCount === 0) return null;
    return (await this.listWorkers()).find((worker) => worker.name === name) ?? null;
  }

  async stats(since: number): Promise<Stats> {
    const [counts, times] = await Promise.all([
      this.query<QueueCounts>(this.sql.queueCounts, [since]),
      this.query<{ queue: string; ms: number }>(this.sql.runTimes, [since]),
    ]);
    return summarizeStats(since, countsFromRows(counts.rows), runTimesByQueue(times.rows));
  }

  async waitFacts(id: string): Promise<WaitFacts | null> {
    const numericId = parseId(id);
    if (numericId === null) return null;
    const now = this.now();
    const job = await this.detail(this.pool, numericId);
    if (!job) return null;
    const ids = (result: pg.QueryResult<{ id: number }>) => result.rows.map((r) => String(r.id));
    const [queue, queueHolders, keyHolders, ahead, workers] = await Promise.all([
      this.query<QueueRow>(this.sql.queue, [job.queue]),
      this.query<{ id: number }>(this.sql.queueHolders, [job.queue]),
      this.query<{ id: number }>(this.sql.keyHolders, [job.concurrencyKey]),
      this.query<{ n: number }>(this.sql.ahead, [
        job.queue,
        now,
        job.priority,
        job.runAt,
        numericId,
      ]),
      this.listWorkers(),
    ]);
    const holdingKey = ids(keyHolders);
    return {
      job,
      now,
      queue: queueFromRow(queue.rows[0] as QueueRow),
      queueHolders: ids(queueHolders),
      keyRunning: holdingKey.length,
      keyHolders: holdingKey,
      workers,
      ahead: ahead.rows[0]?.n ?? 0,
    };
  }

  async putSchedule(spec: ScheduleSpec): Promise<{ schedule: Schedule; created: boolean }> {
    const now = this.now();
    const { rows } = await this.query<ScheduleRow & { inserted: boolean }>(
      this.sql.upsertSchedule,
      [
        spec.name,
        spec.cron,
        spec.timezone,
        spec.missed,
        JSON.stringify(spec.job),
        firstFiring(spec.cron, spec.timezone, now),
        now,
      ],
    );
    const row = rows[0] as ScheduleRow & { inserted: boolean };
    return { schedule: scheduleFromRow(row), created: row.inserted };
  }

  async getSchedule(name: string): Promise<Schedule | null> {
    const { rows } = await this.query<ScheduleRow>(this.sql.schedule, [name]);
    return rows[0] ? scheduleFromRow(rows[0]) : null;
  }

  async listSchedules(): Promise<Schedule[]> {
    const { rows } = await this.query<ScheduleRow>(this.sql.schedules, []);
    return rows.map(scheduleFromRow);
  }

  async pauseSchedule(name: string, paused: boolean): Promise<Schedule | null> {
    const now = this.now();
    const outcome = await this.transaction(async (client) => {
      const { rows } = await client.query<ScheduleRow>(this.sql.lockSchedule, [name]);
      const row = rows[0];
      if (!row) return null;
      // Resuming: what passed while paused was missed, however recent (grace 0).
      const firing =
        !paused && row.paused === 1 && row.next_fire_at !== null && row.next_fire_at <= now
          ? await this.applyFiring(client, { ...row, next_fire_at: row.next_fire_at }, now, 0)
          : null;
      const updated = await client.query<ScheduleRow>(this.sql.setSchedulePaused, [
        name,
        paused ? 1 : 0,
      ]);
      return { schedule: scheduleFromRow(updated.rows[0] as ScheduleRow), firing };
    });
    if (outcome?.firing?.jobId) this.emitAvailable();
    return outcome?.schedule ?? null;
  }

  async removeSchedule(name: string): Promise<boolean> {
    const { rowCount } = await this.query(this.sql.deleteSchedule, [name]);
    return (rowCount ?? 0) > 0;
  }

  /** Servers firing at once take different schedules (SKIP LOCKED); the CAS guards the rest. */
  async fireSchedules(): Promise<Firing[]> {
    const now = this.now();
    const firings: Firing[] = [];
    for (let i = 0; i < MAX_FIRINGS_PER_CALL; i++) {
      const handled = await this.transaction(async (client) => {
        const { rows } = await client.query<ScheduleRow & { next_fire_at: number }>(
          this.sql.dueSchedule,
          [now],
        );
        const row = rows[0];
        return row ? { firing: await this.applyFiring(client, row, now, MISSED_GRACE_MS) } : null;
      });
      if (!handled) break;
      if (handled.firing) firings.push(handled.firing);
    }
    if (firings.some((firing) => firing.jobId !== null)) this.emitAvailable();
    return firings;
  }

  /**
   * Handles a schedule's due firing inside the caller's transaction: moves its next firing
   * on with a compare-and-set, and only if that changed the row submits the firing's job.
   * Null when another party had already handled the firing.
   */
  private async applyFiring(
    client: TxClient,
    row: ScheduleRow & { next_fire_at: number },
    now: number,
    graceMs: number,
  ): Promise<Firing | null> {
    const { plan, spec, error } = firingOf(row, now, graceMs);
    const moved = await client.query(this.sql.advanceSchedule, [
      row.name,
      row.next_fire_at,
      plan.nextFireAt,
      plan.jobFor,
    ]);
    if (moved.rowCount === 0) return null;
    let jobId: string | null = null;
    if (spec) {
      const { row: job } = await this.insertJob(client, spec, now);
      await client.query(this.sql.setScheduleJob, [row.name, job.id]);
      jobId = String(job.id);
    }
    return { schedule: row.name, at: row.next_fire_at, missed: plan.missed, jobId, error };
  }

  /**
   * One transaction, a window of candidates at a time: the most urgent admissible pending
   * jobs, locked with SKIP LOCKED (never another claimer's); those that fit what the ones
   * before them left are leased in one statement (an attempt's row is written when it ends). A queue
   * with a running limit, or a concurrency key, is locked (advisory, till commit) and its
   * running jobs counted exactly before any of its jobs is taken: the locks of those among
   * the most urgent candidates are waited for before any row is locked, in one global order
   * (queues, then keys, by hash) so that claimers cannot deadlock; others met later are only
   * tried, and a busy queue or key is left for the next batch.
   */
  async claimBatch(request: ClaimRequest, max: number): Promise<Claim[]> {
    if (max <= 0) return [];
    const now = this.now();
    const expiresAt = now + request.leaseTtlMs;
    const first = await this.claimFirst(request, max, now, expiresAt);
    let rows = first.rows;
    if (!first.complete) {
      const capacity = unusedCapacity(request, rows);
      const more = await this.claimLocked({ ...request, ...capacity }, max - rows.length);
      if (more.leftForOthers) this.emitAvailable();
      rows = [...rows, ...more.rows];
    }
    // The locked claim stamps its own time, after waiting for its locks.
    return rows.map((row) => claimOf(row, request.workerId, row.lease_expires_at ?? expiresAt));
  }

  /**
   * `claimWindows` in its transaction; tried once more, waiting for them too, if it met
   * queues' or keys' locks held by other claimers.
   */
  private async claimLocked(request: ClaimRequest, max: number) {
    let waitFor: LimitedNames = { queues: [], keys: [] };
    for (let tries = 1; tries < MAX_LOCKED_CLAIM_TRIES; tries++) {
      try {
        return await this.transaction(
          (client) => this.claimWindows(client, request, max, { waitFor, retryIfBusy: true }),
          BEGIN_BY_INDEX,
        );
      } catch (error) {
        if (!(error instanceof LocksBusy)) throw error;
        waitFor = {
          queues: [...new Set([...waitFor.queues, ...error.names.queues])],
          keys: [...new Set([...waitFor.keys, ...error.names.keys])],
        };
      }
    }
    return this.transaction(
      (client) => this.claimWindows(client, request, max, { waitFor, retryIfBusy: false }),
      BEGIN_BY_INDEX,
    );
  }

  /**
   * The common claim in one statement, its own transaction (one round trip, one commit):
   * the most urgent candidates, in claim order, up to the first that has a queue limit or a
   * concurrency key (those need the locks of `claimWindows`) or does not fit the capacity
   * left. `complete` unless a candidate was left that `claimWindows` may yet take.
   */
  private async claimFirst(
    request: ClaimRequest,
    max: number,
    now: number,
    expiresAt: number,
  ): Promise<{ rows: JobRow[]; complete: boolean }> {
    const { rows } = await this.byIndexPool.query<
      JobRow & { candidates: number; over_capacity: number; bounded: boolean }
    >({
      name: this.sql.claimFirst.name,
      text: this.sql.claimFirst.text,
      values: [...claimValues(request, now, expiresAt), max, request.handlers ?? null],
    });
    const summary = rows[0];
    if (!summary) throw new Error("the claim statement answered no row");
    // Without a claimed job, the one row carries only the counts.
    const claimed = summary.id === null ? [] : rows;
    // As in claimWindows: this claimer locked a job it had no room for, so others skipped it.
    if (summary.over_capacity > 0) {
      await this.notify(this.autocommit, { type: "job_available" });
      this.emitAvailable();
    }
    // Fewer candidates than asked for means none are left, unless a limited job cut them short.
    const complete =
      claimed.length === max ||
      (claimed.length === summary.candidates && summary.candidates < max && !summary.bounded);
    return { rows: claimed, complete };
  }

  /**
   * `waitFor`: queues and keys whose locks to wait for first, besides those of the most
   * urgent candidates (an earlier try met them busy). `retryIfBusy`: on meeting a lock held
   * by another claimer, undo the claim (LocksBusy) rather than pass over that queue's or
   * key's jobs for less urgent ones.
   */
  private async claimWindows(
    client: TxClient,
    request: ClaimRequest,
    max: number,
    options: { waitFor: LimitedNames; retryIfBusy: boolean },
  ): Promise<{ rows: JobRow[]; leftForOthers: boolean }> {
    let now = this.now();
    const claimed: JobRow[] = [];
    const capacity = { cpus: request.freeCpus, memoryMb: request.freeMemoryMb };
    // Exact counts of the queues and keys whose locks this transaction holds.
    const running: RunningCounts = { queues: new Map(), keys: new Map() };
    const skipQueues = new Set<string>();
    const skipKeys = new Set<string>();
    // Whether candidates were locked here (so other claimers skipped them) and left, for
    // want of this claimer's capacity, because their queue's or key's lock was busy, or at
    // the last window: another claimer may take them once this one commits.
    let leftForOthers = false;
    const candidateValues = (room: number) => [
      now,
      request.queues === null,
      request.queues ?? [],
      request.kinds,
      capacity.cpus,
      capacity.memoryMb,
      [...skipQueues],
      [...skipKeys],
      room,
      request.handlers ?? null,
    ];
    /** The queues with a running limit and the keys among these candidates, not yet locked. */
    const limitedOf = (candidates: readonly ClaimCandidate[]) => {
      const queues = new Set<string>();
      const keys = new Set<string>();
      for (const c of candidates) {
        if (c.queue_limit !== null && !running.queues.has(c.queue)) queues.add(c.queue);
        if (c.concurrency_key !== null && !running.keys.has(c.concurrency_key)) {
          keys.add(c.concurrency_key);
        }
      }
      return { queues: [...queues], keys: [...keys] };
    };
    // Wait for the locks of the limited queues and keys among the most urgent candidates
    // before locking any row. Another claimer locks a row of such a queue or key only while
    // it holds that lock, so once this one has waited for it the row is taken or free again:
    // never skipped for a moment, and a less urgent job taken in its place. Holding no row
    // yet, and taking these in one global order, claimers cannot deadlock.
    const peeked = await client.query<ClaimCandidate>(
      this.sql.peekCandidates,
      candidateValues(max),
    );
    const first = limitedOf(peeked.rows);
    const waitQueues = new Set([...first.queues, ...options.waitFor.queues]);
    const waitKeys = new Set([...first.keys, ...options.waitFor.keys]);
    await this.lockLimited(client, [...waitQueues], [...waitKeys], true, running);
    // The claim is made now, not when it began to wait: its jobs' start and lease count
    // from here.
    now = this.now();
    const expiresAt = now + request.leaseTtlMs;
    /**
     * Tries the locks of these queues and keys; those busy are left (for the next batch) or,
     * on a try that may be repeated, the claim is undone to wait for them.
     */
    const tryLocks = async (names: LimitedNames) => {
      const busy = await this.lockLimited(client, names.queues, names.keys, false, running);
      if (busy.queues.size + busy.keys.size === 0) return busy;
      if (options.retryIfBusy) {
        throw new LocksBusy({ queues: [...busy.queues], keys: [...busy.keys] });
      }
      leftForOthers = true;
      busy.queues.forEach((queue) => skipQueues.add(queue));
      busy.keys.forEach((key) => skipKeys.add(key));
      return busy;
    };
    let window = 0;
    for (; window < MAX_CLAIM_WINDOWS && claimed.length < max; window++) {
      const room = max - claimed.length;
      // Read again without locks (what was read before waiting, or before the last window's
      // claims, has changed): the limited queues and keys now met are tried before any of
      // their rows is locked.
      const ahead = await client.query<ClaimCandidate>(
        this.sql.peekCandidates,
        candidateValues(room),
      );
      if (ahead.rows.length === 0) break;
      const busyAhead = await tryLocks(limitedOf(ahead.rows));
      const { rows: candidates } = await client.query<ClaimCandidate>(
        this.sql.claimCandidates,
        candidateValues(room),
      );
      if (candidates.length === 0) break;
      // Queues and keys not read ahead (their jobs were being claimed by others) are tried
      // holding their rows.
      const busy = await tryLocks(limitedOf(candidates));
      const usable = candidates.filter(
        (c) =>
          !busy.queues.has(c.queue) &&
          !(c.concurrency_key !== null && busy.keys.has(c.concurrency_key)),
      );
      const fitting = pickFitting(usable, capacity, running, room);
      const { picked, skipped, fullQueues, fullKeys } = fitting;
      if (fitting.overCapacity > 0) leftForOthers = true;
      fullQueues.forEach((queue) => skipQueues.add(queue));
      fullKeys.forEach((key) => skipKeys.add(key));
      if (picked.length > 0) {
        const { rows } = await client.query<JobRow>(this.sql.claimMany, [
          picked.map((c) => c.id),
          request.workerId,
          expiresAt,
          now,
        ]);
        const byId = new Map(rows.map((row) => [row.id, row]));
        for (const c of picked) {
          const row = byId.get(c.id);
          if (row) claimed.push(row);
        }
      }
      const leftOut = skipped + (candidates.length - usable.length);
      if (leftOut === 0 && candidates.length < room) break;
      const excluded =
        busyAhead.queues.size +
        busyAhead.keys.size +
        busy.queues.size +
        busy.keys.size +
        fullQueues.size +
        fullKeys.size;
      if (picked.length === 0 && excluded === 0) break;
    }
    if (window === MAX_CLAIM_WINDOWS && claimed.length < max) leftForOthers = true;
    // Another worker may have skipped such a job and taken a less urgent one: at commit,
    // every worker is told to look again, lest the job wait for the next poll. (Jobs left
    // for a full queue or key are left by every claimer alike, so they need no call: the
    // end of a job holding a limited slot is announced.)
    if (leftForOthers) await this.notify(client, { type: "job_available" });
    return { rows: claimed, leftForOthers };
  }

  /**
   * Takes the transaction's advisory locks on these limited queues and keys and counts their
   * running jobs into `running` (committed claims of others, and this transaction's own).
   * `wait`: wait for the locks, queues before keys, each by hash, so that claimers all take
   * them in one order; otherwise only try, and return the queues and keys that were busy.
   */
  private async lockLimited(
    client: TxClient,
    queues: string[],
    keys: string[],
    wait: boolean,
    running: RunningCounts,
  ): Promise<{ queues: Set<string>; keys: Set<string> }> {
    const busy = { queues: new Set<string>(), keys: new Set<string>() };
    if (queues.length + keys.length === 0) return busy;
    const names = [
      ...queues.map((queue) => `${this.schema}:queue:${queue}`),
      ...keys.map((key) => `${this.schema}:key:${key}`),
    ];
    const groups = [...queues.map(() => 0), ...keys.map(() => 1)];
    if (wait) {
      await client.query(this.sql.lockNames, [names, groups]);
    } else {
      const { rows } = await client.query<{ locked: boolean }>(this.sql.tryLockNames, [names]);
      rows.forEach((row, i) => {
        if (row.locked) return;
        if (i < queues.length) busy.queues.add(queues[i] as string);
        else busy.keys.add(keys[i - queues.length] as string);
      });
    }
    const lockedQueues = queues.filter((queue) => !busy.queues.has(queue));
    const lockedKeys = keys.filter((key) => !busy.keys.has(key));
    for (const queue of lockedQueues) running.queues.set(queue, 0);
    for (const key of lockedKeys) running.keys.set(key, 0);
    const { rows } = await client.query<{ kind: string; name: string; n: number }>(
      this.sql.runningCounts,
      [lockedQueues, lockedKeys],
    );
    for (const row of rows)
      (row.kind === "queue" ? running.queues : running.keys).set(row.name, row.n);
    return busy;
  }

  /**
   * One statement (in a transaction only to be planned by index): every lease still held is
   * extended; answers in the order given.
   */
  async heartbeatBatch(leases: readonly Lease[], ttlMs: number): Promise<HeartbeatAnswer[]> {
    if (leases.length === 0) return [];
    const expiresAt = this.now() + ttlMs;
    // In id order: rows are locked in the order given, as every writer of many rows does.
    const valid = leases
      .filter((lease) => parseId(lease.jobId) !== null)
      .sort((a, b) => Number(a.jobId) - Number(b.jobId));
    const { rows } = await this.transaction(
      (client) =>
        client.query<{ id: number; attempt: number; worker_id: string; cancel_requested: number }>(
          this.sql.heartbeatMany,
          [
            valid.map((lease) => Number(lease.jobId)),
            valid.map((lease) => lease.attempt),
            valid.map((lease) => lease.workerId),
            expiresAt,
          ],
        ),
      BEGIN_BY_INDEX,
    );
    const held = new Map(
      rows.map((row) => [leaseKey(String(row.id), row.attempt, row.worker_id), row]),
    );
    return leases.map((lease) => {
      const row = held.get(leaseKey(lease.jobId, lease.attempt, lease.workerId));
      if (!row) {
        this.fencedWrites++;
        return { held: false, cancel: false };
      }
      return { held: true, cancel: row.cancel_requested === 1, expiresAt };
    });
  }

  /**
   * One transaction: the jobs are locked (in id order), each completion is fenced and its
   * next state decided in order, as `complete` would, then one statement updates every job
   * and attempt that moved and notifies.
   */
  async completeBatch(items: readonly Completion[]): Promise<CompletionAnswer[]> {
    if (items.length === 0) return [];
    const now = this.now();
    const ids = [...new Set(items.flatMap(({ lease }) => parseId(lease.jobId) ?? []))];
    const written =
      ids.length === items.length && items.every(({ outcome }) => outcome.state === "succeeded")
        ? await this.completeSucceeded(items, now)
        : await this.completeDecided(items, ids, now);
    this.fencedWrites += announceCompletions(items, written, (change) =>
      change.type === "job_available" ? this.emitAvailable() : this.emit(change),
    );
    return written.answers;
  }

  /**
   * Successes of distinct jobs, the common batch: what each does does not depend on its
   * job's row (a success ends the job, whatever its attempts or cancel), so one statement,
   * its own transaction, fences and writes them all, with no round trip to read them first.
   * It locks its rows in id order before updating them, as heartbeats and the other
   * outcomes do: an UPDATE alone locks rows in whatever order its plan visits them, and
   * against a heartbeat of the same rows that deadlocked.
   */
  private async completeSucceeded(
    items: readonly Completion[],
    now: number,
  ): Promise<CompletionsWritten> {
    const input = items
      .map(({ lease, outcome }) => [
        parseId(lease.jobId),
        lease.attempt,
        outcome.exitCode,
        resultColumn(outcome),
      ])
      .sort((a, b) => Number(a[0]) - Number(b[0]));
    const { rows } = await this.byIndexPool.query<{ id: number; available: number }>({
      name: this.sql.completeSucceeded.name,
      text: this.sql.completeSucceeded.text,
      values: [JSON.stringify(input), now, this.channel],
    });
    const done = new Set(rows.map((row) => String(row.id)));
    const refused = items.filter(({ lease }) => !done.has(lease.jobId));
    // A refused completion answers with its job's state now (rare: a lost lease), if it can
    // be read: the batch is committed, and must be announced whatever happens next.
    const states = new Map<string, JobState>();
    if (refused.length > 0) {
      const refusedIds = refused.flatMap(({ lease }) => parseId(lease.jobId) ?? []);
      const current = await this.query<{ id: number; state: JobState }>(this.sql.states, [
        refusedIds,
      ]).catch(() => ({ rows: [] }));
      for (const row of current.rows) states.set(String(row.id), row.state);
    }
    const answers = items.map(({ lease }): CompletionAnswer =>
      done.has(lease.jobId)
        ? { applied: true, state: "succeeded" }
        : { applied: false, state: states.get(lease.jobId) ?? null },
    );
    return { answers, available: (rows[0]?.available ?? 0) > 0 };
  }

  /** Any outcomes: the rows are locked, each outcome decided from its row, then written. */
  private async completeDecided(
    items: readonly Completion[],
    ids: readonly number[],
    now: number,
  ): Promise<CompletionsWritten> {
    return this.transaction(async (client) => {
      const { rows } = await client.query<OutcomeRow>(this.sql.lockOutcomeRows, [ids]);
      const current = new Map(rows.map((row) => [row.id, row]));
      const { answers, updates } = decideCompletions(items, current, parseId, now, this.random);
      if (updates.length === 0) return { answers, available: false };
      const written = await client.query<{ available: number }>(this.sql.completeMany, [
        JSON.stringify(updates),
        now,
        this.channel,
      ]);
      return { answers, available: (written.rows[0]?.available ?? 0) > 0 };
    }, BEGIN_BY_INDEX);
  }

  async heartbeat(lease: Lease, ttlMs: number): Promise<HeartbeatAnswer> {
    const expiresAt = this.now() + ttlMs;
    const { rows } = await this.query<{ cancel_requested: number }>(this.sql.heartbeat, [
      ...fence(lease),
      expiresAt,
    ]);
    const row = rows[0];
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
    const lastSeq = await this.transaction(async (client) => {
      const state = await client.query<LogState>(this.sql.logState, fence(lease));
      const current = state.rows[0];
      if (!current) return null;
      const plan = planAppend(current, lines);
      if (plan.events.length > 0) {
        const columns: LogColumns = [[], [], [], [], [], [], []];
        let seq = plan.firstSeq;
        for (const line of plan.events) {
          columns[0].push(seq++);
          columns[1].push(line.stream);
          columns[2].push(line.line);
          columns[3].push(line.ts);
          columns[4].push(line.kind);
          columns[5].push(line.data === null ? null : JSON.stringify(line.data));
          columns[6].push(line.cut ? 1 : 0);
        }
        await client.query(this.sql.insertLogs, [Number(lease.jobId), lease.attempt, ...columns]);
      }
      await client.query(this.sql.updateLogState, [
        Number(lease.jobId),
        plan.lastSeq,
        plan.bytes,
        plan.droppedLines,
        plan.droppedBytes,
        plan.progress,
        stored ? JSON.stringify(stored) : null,
      ]);
      // Followers on other servers learn of new output at once.
      await this.notify(client, { type: "logs", jobId: lease.jobId });
      return plan.lastSeq;
    });
    if (lastSeq === null) {
      this.fencedWrites++;
      return { applied: false };
    }
    this.emit({ type: "logs", jobId: lease.jobId });
    return { applied: true, lastSeq };
  }

  async complete(lease: Lease, outcome: AttemptOutcome): Promise<FencedAnswer> {
    const ended = await this.transaction(async (client) => {
      const row = await this.lockedRow(client, lease.jobId);
      const applied = row && (await this.applyOutcome(client, row, lease, outcome, this.now()));
      if (!row || !applied) return null;
      return { job: await this.detail(client, row.id), available: applied.available };
    });
    if (!ended?.job) return this.refused(lease);
    this.emit({ type: "job_finished", jobId: lease.jobId });
    if (ended.available) this.emitAvailable();
    return { applied: true, job: ended.job };
  }

  async release(lease: Lease, message: string): Promise<FencedAnswer> {
    const now = this.now();
    const ended = await this.transaction(async (client) => {
      const current = await this.lockedRow(client, lease.jobId);
      if (!current) return null;
      // A job whose cancel was requested is not put back in line: it ends cancelled.
      if (current.cancel_requested === 1) {
        const stopped: AttemptOutcome = { state: "cancelled", exitCode: null, signal: null };
        const applied = await this.applyOutcome(client, current, lease, stopped, now);
        if (!applied) return null;
        return { job: await this.detail(client, current.id), available: applied.available };
      }
      const released = await client.query<JobRow>(this.sql.release, fence(lease));
      const row = released.rows[0];
      if (!row) return null;
      // The attempt's worker and start, as the job's row held them before the release.
      await client.query(this.sql.finishAttempt, [
        row.id,
        lease.attempt,
        lease.workerId,
        current.started_at ?? now,
        now,
        null,
        null,
        SHUTDOWN_REASON,
        message,
      ]);
      await this.notify(client, { type: "job_available" });
      return { job: await this.detail(client, row.id), available: true };
    });
    if (!ended?.job) return this.refused(lease);
    const { job } = ended;
    if (job.state !== "pending") this.emit({ type: "job_finished", jobId: job.id });
    if (ended.available) this.emitAvailable();
    return { applied: true, job };
  }

  async heldBy(workerId: string): Promise<HeldLease[]> {
    const { rows } = await this.query<JobRow>(this.sql.heldBy, [workerId]);
    return rows.map((row) => heldLeaseFromRow(row, workerId));
  }

  async cancelRequests(workerId: string): Promise<Lease[]> {
    const { rows } = await this.query<{ id: number; attempt: number }>(this.sql.cancelRequests, [
      workerId,
    ]);
    return rows.map((row) => ({ jobId: String(row.id), attempt: row.attempt, workerId }));
  }

  async cancel(id: string): Promise<JobDetail | null> {
    const numericId = parseId(id);
    if (numericId === null) return null;
    const now = this.now();
    const outcome = await this.transaction(async (client) => {
      const row = await this.lockedRow(client, id);
      if (!row) return null;
      let change: StoreChange | null = null;
      if (row.state === "pending" || row.state === "blocked") {
        await client.query(this.sql.cancelWaiting, [numericId, now]);
        change = { type: "job_finished", jobId: id };
      } else if (row.state === "running" && row.cancel_requested === 0) {
        await client.query(this.sql.requestCancel, [numericId]);
        change = { type: "cancel_requested", jobId: id };
      }
      if (change) await this.notify(client, change);
      return { job: await this.detail(client, numericId), change };
    });
    if (!outcome) return null;
    if (outcome.change) this.emit(outcome.change);
    return outcome.job;
  }

  async reapExpired(): Promise<number> {
    const now = this.now();
    const reaped = await this.transaction(async (client) => {
      // SKIP LOCKED: reapers on other processes take the others; none waits on another.
      const expired = await client.query<JobRow>(this.sql.expired, [now]);
      const finished: StoreChange[] = [];
      let available = false;
      for (const row of expired.rows) {
        const lease: Lease = {
          jobId: String(row.id),
          attempt: row.attempt,
          workerId: row.worker_id ?? "",
        };
        const outcome = workerLostOutcome(row.worker_id, row.lease_expires_at ?? now);
        const applied = await this.applyOutcome(client, row, lease, outcome, now);
        if (applied) finished.push({ type: "job_finished", jobId: lease.jobId });
        if (applied?.available) available = true;
      }
      return { finished, available };
    });
    for (const change of reaped.finished) this.emit(change);
    if (reaped.available) this.emitAvailable();
    return reaped.finished.length;
  }

  async readLogs(id: string, query: LogQuery): Promise<LogEvent[]> {
    const numericId = parseId(id);
    if (numericId === null) return [];
    const { rows } = await this.query<LogRow>(this.sql.readLogs, [
      numericId,
      query.after,
      query.attempt ?? null,
      query.stream ?? null,
      query.limit,
    ]);
    return rows.map(logEventFromRow);
  }

  async pruneLogs(finishedBefore: number, maxJobs: number): Promise<number> {
    const { rows } = await this.query<{ pruned: number }>(this.sql.pruneLogs, [
      finishedBefore,
      maxJobs,
      this.now(),
    ]);
    return rows[0]?.pruned ?? 0;
  }

  watch(listener: (change: StoreChange) => void): () => void {
    this.listeners.add(listener);
    if (this.listeners.size === 1) this.startListening();
    return () => {
      this.listeners.delete(listener);
      if (this.listeners.size === 0) this.stopListening();
    };
  }

  counters(): StoreCounters {
    return { fencedWrites: this.fencedWrites };
  }

  async ping(): Promise<void> {
    await this.pool.query("SELECT 1");
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    this.listeners.clear();
    this.stopListening();
    // Submits already made are written before the pool closes.
    await this.submits.idle();
    await Promise.all([this.pool.end(), this.byIndexPool.end()]);
  }

  /** Drops the schema and everything in it (tests). */
  async dropSchema(): Promise<void> {
    await this.pool.query(`DROP SCHEMA IF EXISTS ${this.schema} CASCADE`);
  }

  private query<R extends pg.QueryResultRow>(
    statement: Statement,
    values: unknown[],
  ): Promise<pg.QueryResult<R>> {
    return this.pool.query<R>({ name: statement.name, text: statement.text, values });
  }

  private async transaction<T>(
    work: (client: TxClient) => Promise<T>,
    begin = "BEGIN",
  ): Promise<T> {
    const client = await this.pool.connect();
    const tx: TxClient = {
      query: <R extends pg.QueryResultRow>(statement: Statement, values: unknown[]) =>
        client.query<R>({ name: statement.name, text: statement.text, values }),
    };
    try {
      await client.query(begin);
      const result = await work(tx);
      await client.query("COMMIT");
      client.release();
      return result;
    } catch (error) {
      // A broken connection is discarded, not returned to the pool.
      await client.query("ROLLBACK").then(
        () => client.release(),
        (rollbackError: Error) => client.release(rollbackError),
      );
      throw error;
    }
  }

  private async lockedRow(client: TxClient, id: string): Promise<JobRow | null> {
    const numericId = parseId(id);
    if (numericId === null) return null;
    const { rows } = await client.query<JobRow>(this.sql.lockById, [numericId]);
    return rows[0] ?? null;
  }

  /**
   * Records an attempt's end, moves the job on and announces it; null when the lease is not
   * held. `available`: work was announced too (the job went back to pending, or it freed a
   * limited slot).
   */
  private async applyOutcome(
    client: TxClient,
    row: JobRow,
    lease: Lease,
    outcome: AttemptOutcome,
    now: number,
  ): Promise<{ available: boolean } | null> {
    if (row.state !== "running" || row.attempt !== lease.attempt) return null;
    const next = nextStateOf(row, outcome, now, this.random());
    const failure = next.failure;
    await client.query(this.sql.finishAttempt, [
      row.id,
      lease.attempt,
      row.worker_id ?? lease.workerId,
      row.started_at ?? now,
      now,
      outcome.exitCode,
      outcome.signal,
      failure?.reason ?? null,
      failure?.message ?? null,
    ]);
    await client.query(this.sql.applyNextState, [
      row.id,
      lease.attempt,
      next.state,
      next.runAt ?? row.run_at,
      next.state === "pending" ? null : now,
      outcome.exitCode,
      outcome.signal,
      resultColumn(outcome),
      failure?.reason ?? null,
      failure?.message ?? null,
    ]);
    const { rows } = await client.query<{ available: number }>(this.sql.announceEnd, [
      this.channel,
      row.id,
    ]);
    return { available: (rows[0]?.available ?? 0) > 0 };
  }

  private async notify(client: TxClient, change: StoreChange): Promise<void> {
    await client.query(this.sql.notify, [this.channel, JSON.stringify(change)]);
  }

  private async refused(lease: Lease): Promise<FencedAnswer> {
    this.fencedWrites++;
    const numericId = parseId(lease.jobId);
    return {
      applied: false,
      job: numericId === null ? null : await this.detail(this.pool, numericId),
    };
  }

  private async detail(client: TxClient | pg.Pool, id: number): Promise<JobDetail | null> {
    const run = <R extends pg.QueryResultRow>(statement: Statement, values: unknown[]) =>
      client instanceof pg.Pool
        ? client.query<R>({ name: statement.name, text: statement.text, values })
        : client.query<R>(statement, values);
    const job = await run<JobRow>(this.sql.byId, [id]);
    const row = job.rows[0];
    if (!row) return null;
    const attempts = await run<AttemptRow>(this.sql.attempts, [id]);
    return detailFromRows(row, attempts.rows);
  }

  private emit(change: StoreChange): void {
    for (const listener of this.listeners) listener(change);
  }

  /**
   * Tells listeners of work this store has just announced with NOTIFY. While its LISTEN
   * works, that NOTIFY tells them, and often before the statement's own answer arrives:
   * workers wake sooner, and once. Otherwise the store tells them itself.
   */
  private emitAvailable(): void {
    if (!this.listening) this.emit({ type: "job_available" });
  }

  /**
   * LISTENs on a connection of its own; if it breaks (database restart, network), it is
   * reopened with exponential backoff and jitter, and listeners are told that anything may
   * have happened meanwhile.
   */
  private startListening(): void {
    if (this.listener || this.closed || this.reconnectTimer) return;
    // TCP keepalive: a connection that died silently (a failover, a NAT's idle timeout) must
    // end in time, since this store's own wake-ups come through it (see emitAvailable).
    const client = new pg.Client({
      connectionString: this.options.url,
      types,
      keepAlive: true,
      keepAliveInitialDelayMillis: 10_000,
    });
    this.listener = client;
    const fail = (error: Error) => {
      if (this.listener !== client) return;
      this.listener = null;
      this.listening = false;
      client.removeAllListeners("notification");
      void client.end().catch(() => {});
      this.listenerFailures++;
      if (this.listenerFailures === 1) this.options.onListenerError?.(error, 1);
      if (this.closed || this.listeners.size === 0) return;
      const delay = Math.min(30_000, 100 * 2 ** Math.min(this.listenerFailures, 9));
      this.reconnectTimer = setTimeout(
        () => {
          this.reconnectTimer = null;
          this.startListening();
        },
        delay * (0.5 + this.random()),
      );
    };
    client.on("error", fail);
    client.on("end", () => fail(new Error("the notification connection closed")));
    client.on("notification", (message) => {
      if (message.channel !== this.channel || !message.payload) return;
      try {
        const change = JSON.parse(message.payload) as StoreChange | FinishedBatch;
        const own = this.ownBackends.has(message.processId);
        if (own && change.type !== "job_available") return;
        if (change.type !== "jobs_finished") this.emit(change);
        else for (const jobId of change.jobIds) this.emit({ type: "job_finished", jobId });
      } catch {
        // Not ours: ignore.
      }
    });
    client
      .connect()
      .then(() => client.query(`LISTEN ${this.channel}`))
      .then(() => {
        if (this.listener !== client) return;
        if (this.listenerFailures > 0) this.options.onListenerError?.(null, this.listenerFailures);
        this.listenerFailures = 0;
        this.listening = true;
        // Whatever happened before LISTEN took effect (at start, or during an outage) was
        // not announced: listeners should look.
        this.emit({ type: "external" });
      })
      .catch((error: Error) => fail(error));
  }

  private stopListening(): void {
    this.listening = false;
    if (this.reconnectTimer) clearTimeout(this.reconnectTimer);
    this.reconnectTimer = null;
    const client = this.listener;
    this.listener = null;
    if (client) {
      client.removeAllListeners();
      client.on("error", () => {});
      void client.end().catch(() => {});
    }
  }
}

interface Statement {
  name: string;
  text: string;
}

/** The values the claim statements begin with ($1–$8): which jobs may be taken, and the lease. */
function claimValues(request: ClaimRequest, now: number, expiresAt: number): unknown[] {
  return [
    now,
    request.queues === null,
    request.queues ?? [],
    request.kinds,
    request.freeCpus,
    request.freeMemoryMb,
    request.workerId,
    expiresAt,
  ];
}

/** A claimed job's row as the claim its worker gets. */
function claimOf(row: JobRow, workerId: string, expiresAt: number): Claim {
  const job = jobFromRow(row);
  return { job, lease: { jobId: job.id, attempt: job.attempt, workerId }, expiresAt };
}

/**
 * The jobs a claim may take, as `claimValues` gives them: pending and due, of a queue it
 * serves and a kind (and handler, at parameter `handlers`) it runs, within its free CPUs and
 * memory, its queue neither paused nor at its limit, its key not at its limit. A handler job
 * without its handler column was queued by a Baton older than that column, still running
 * after the migration: its spec names the handler.
 */
function claimable(s: string, handlers: string): string {
  return `state = 'pending' AND run_at <= $1
    AND ($2 OR queue = ANY($3::text[]))
    AND kind = ANY($4::text[])
    AND (kind <> 'handler' OR ${handlers}::text[] IS NULL
      OR handler = ANY(${handlers}::text[])
      OR (handler IS NULL AND spec::jsonb ->> 'handler' = ANY(${handlers}::text[])))
    AND cpus <= $5
    AND (memory_mb IS NULL OR $6::int IS NULL OR memory_mb <= $6)
    AND ${queueAdmits(`${s}.`)}
    AND ${keyAdmits(`${s}.`)}`;
}

/** The server process of a connected client (node-postgres keeps it, untyped, from the handshake). */
function backendPid(client: pg.PoolClient): number {
  return (client as pg.PoolClient & { processID: number }).processID;
}

function leaseKey(jobId: string, attempt: number, workerId: string): string {
  return `${jobId}:${attempt}:${workerId}`;
}

interface TxClient {
  query<R extends pg.QueryResultRow>(
    statement: Statement,
    values: unknown[],
  ): Promise<pg.QueryResult<R>>;
}

type LogColumns = [
  number[],
  string[],
  string[],
  number[],
  string[],
  Array<string | null>,
  number[],
];

function parseId(id: string): number | null {
  if (!/^[1-9]\d{0,15}$/.test(id)) return null;
  return Number(id);
}

function fence(lease: Lease): [number, number, string] {
  return [Number(lease.jobId), lease.attempt, lease.workerId];
}

/** Every statement the store runs, named so that each connection prepares it once. */
function statements(schema: string) {
  const s = schema;
  const held = "id = $1 AND attempt = $2 AND worker_id = $3 AND state = 'running'";
  const statement = (name: string, text: string): Statement => ({ name: `${s}_${name}`, text });
  // The most urgent claimable jobs, outside the queues and keys given, with their queue's limit.
  const candidates = `SELECT id, queue, cpus, memory_mb, concurrency_key, concurrency_limit,
      (SELECT q.max_running FROM ${s}.queues AS q WHERE q.name = j.queue) AS queue_limit
    FROM ${s}.jobs AS j
    WHERE ${claimable(s, "$10")}
      AND NOT (queue = ANY($7::text[]))
      AND (concurrency_key IS NULL OR NOT (concurrency_key = ANY($8::text[])))
    ORDER BY priority, run_at, id
    LIMIT $9`;
  return {
    // $1–$18: the new job's columns in NEW_JOB_COLUMNS' order; $19: the channel.
    insert: statement(
      "insert",
      `WITH inserted AS (
         INSERT INTO ${s}.jobs (${NEW_JOB_COLUMNS.join(", ")}, state)
         VALUES (${NEW_JOB_COLUMNS.map((_, i) => `$${i + 1}`).join(", ")}, 'pending')
         ON CONFLICT (idempotency_key) WHERE idempotency_key IS NOT NULL DO NOTHING
         RETURNING *),
       announced AS (
         SELECT pg_notify($19, '{"type":"job_available"}') FROM inserted)
       SELECT inserted.* FROM inserted, (SELECT count(*) FROM announced) AS n`,
    ),
    // $1–$18: the new jobs' columns, one array each in NEW_JOB_COLUMNS' order. pg encodes
    // arrays more slowly than JSON.stringify, but the server reads them faster than rows of
    // JSON: 8.4 against 10.4 µs a job in all. Ids are drawn in the order given; answer row i
    // is the job given i-th.
    insertMany: statement(
      "insert_many",
      `WITH input AS (
         SELECT nextval('${s}.jobs_id_seq') AS id, t.*
         FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::int[], $6::float8[],
             $7::int[], $8::bigint[], $9::int[], $10::bigint[], $11::bigint[], $12::bigint[],
             $13::text[], $14::bigint[], $15::text[], $16::int[], $17::bigint[], $18::text[])
           WITH ORDINALITY AS t(${NEW_JOB_COLUMNS.join(", ")}, ord)),
       inserted AS (
         INSERT INTO ${s}.jobs (id, ${NEW_JOB_COLUMNS.join(", ")}, state)
         SELECT id, ${NEW_JOB_COLUMNS.join(", ")}, 'pending'
         FROM input ORDER BY ord
         ON CONFLICT (idempotency_key) WHERE idempotency_key IS NOT NULL DO NOTHING
         RETURNING id),
       announced AS (
         SELECT pg_notify($19, '{"type":"job_available"}') WHERE EXISTS (SELECT FROM inserted))
       SELECT input.id, inserted.id IS NOT NULL AS created
       FROM input LEFT JOIN inserted ON inserted.id = input.id,
         (SELECT count(*) FROM announced) AS n
       ORDER BY input.ord`,
    ),
    releaseExpiredKeys: statement(
      "release_expired_keys",
      `UPDATE ${s}.jobs SET idempotency_key = NULL
       WHERE idempotency_key = ANY($1::text[]) AND finished_at IS NOT NULL AND finished_at < $2`,
    ),
    byIdempotencyKeys: statement(
      "by_idempotency_keys",
      `SELECT * FROM ${s}.jobs WHERE idempotency_key = ANY($1::text[])`,
    ),
    byId: statement("by_id", `SELECT * FROM ${s}.jobs WHERE id = $1`),
    lockById: statement("lock_by_id", `SELECT * FROM ${s}.jobs WHERE id = $1 FOR UPDATE`),
    byIdempotencyKey: statement(
      "by_idempotency_key",
      `SELECT * FROM ${s}.jobs WHERE idempotency_key = $1`,
    ),
    attempts: statement(
      "attempts",
      `SELECT attempt, worker_id, started_at, finished_at, exit_code, signal, failure_reason,
         failure_message FROM ${s}.attempts WHERE job_id = $1 ORDER BY attempt`,
    ),
    list: statement(
      "list",
      `SELECT * FROM ${s}.jobs
       WHERE ($1::text IS NULL OR state = $1) AND ($2::text IS NULL OR queue = $2)
         AND ($3::bigint IS NULL OR id < $3)
       ORDER BY id DESC LIMIT $4`,
    ),
    // The jobs claimable() admits, a window of candidates at a time, locked.
    claimCandidates: statement("claim_candidates", `${candidates} FOR UPDATE OF j SKIP LOCKED`),
    // The same, read without locking a row: what to take the queues' and keys' locks for.
    peekCandidates: statement("peek_candidates", candidates),
    // claimCandidates' filters; of the candidates, in claim order, those before the first
    // with a queue limit or a concurrency key, as long as they fit the capacity, are claimed.
    // Only candidates before the first such job among the most urgent claimable ones are
    // locked, read first without locks ("head", a few more than asked for, as others may be
    // claiming the first): a job this statement would lock and leave is skipped meanwhile by
    // every other claimer (SKIP LOCKED), which may then take a less urgent job in its place.
    // One row at least: with nothing claimed, its job columns are null.
    claimFirst: statement(
      "claim_first",
      `WITH head AS (
         SELECT priority, run_at, id, ${holdsLimitedSlot(`${s}.`, "j")} AS limited
         FROM ${s}.jobs AS j
         WHERE ${claimable(s, "$10")}
         ORDER BY priority, run_at, id
         LIMIT $9 + 8),
       bound AS (
         SELECT priority, run_at, id FROM head WHERE limited
         UNION ALL
         SELECT 2147483647, 0, 0 -- after every job (priority is an int)
         ORDER BY priority, run_at, id
         LIMIT 1),
       candidate AS (
         SELECT id, priority, run_at, cpus, coalesce(memory_mb, 0) AS memory_mb,
           ${holdsLimitedSlot(`${s}.`, "j")} AS limited
         FROM ${s}.jobs AS j
         WHERE ${claimable(s, "$10")}
           AND (priority, run_at, id) < ((SELECT priority FROM bound),
             (SELECT run_at FROM bound), (SELECT id FROM bound))
         ORDER BY priority, run_at, id
         LIMIT $9
         FOR UPDATE OF j SKIP LOCKED),
       running_total AS (
         SELECT id, bool_or(limited) OVER w AS blocked, sum(cpus) OVER w AS cpus,
           sum(memory_mb) OVER w AS memory_mb
         FROM candidate
         WINDOW w AS (ORDER BY priority, run_at, id ROWS UNBOUNDED PRECEDING)),
       fits AS (
         SELECT id, NOT blocked AND cpus <= $5 AND ($6::int IS NULL OR memory_mb <= $6) AS taken,
           NOT blocked AND NOT (cpus <= $5 AND ($6::int IS NULL OR memory_mb <= $6)) AS too_big
         FROM running_total),
       claimed AS (
         UPDATE ${s}.jobs AS j SET state = 'running', attempt = j.attempt + 1,
           attempts_used = j.attempts_used + 1, worker_id = $7, lease_expires_at = $8,
           started_at = $1, finished_at = NULL, exit_code = NULL, signal = NULL,
           failure_reason = NULL, failure_message = NULL, output_offsets = NULL
         FROM fits WHERE fits.taken AND j.id = fits.id
         RETURNING j.*)
       SELECT claimed.*, counts.candidates, counts.over_capacity,
         EXISTS (SELECT FROM head WHERE limited) AS bounded
       FROM (SELECT count(*)::int AS candidates,
               count(*) FILTER (WHERE too_big)::int AS over_capacity FROM fits) AS counts
         LEFT JOIN claimed ON true
       ORDER BY claimed.priority, claimed.run_at, claimed.id`,
    ),
    // The rows were locked pending by claimCandidates in this transaction. (Testing state here
    // would let a planner without statistics scan every pending job instead of the ids.)
    claimMany: statement(
      "claim_many",
      `WITH claimed AS (
         UPDATE ${s}.jobs AS j SET state = 'running', attempt = j.attempt + 1,
           attempts_used = j.attempts_used + 1, worker_id = $2, lease_expires_at = $3,
           started_at = $4, finished_at = NULL, exit_code = NULL, signal = NULL,
           failure_reason = NULL, failure_message = NULL, output_offsets = NULL
         WHERE j.id = ANY($1::bigint[])
         RETURNING j.*)
       SELECT * FROM claimed`,
    ),
    // Waits for the locks in one order for every claimer: queues (group 0), then keys, each
    // by hash.
    lockNames: statement(
      "lock_names",
      `SELECT pg_advisory_xact_lock(h) FROM (
         SELECT DISTINCT g, hashtext(n) AS h FROM unnest($1::text[], $2::int[]) AS t(n, g)
         ORDER BY g, h) AS ordered`,
    ),
    tryLockNames: statement(
      "try_lock_names",
      `SELECT pg_try_advisory_xact_lock(hashtext(n)) AS locked
       FROM unnest($1::text[]) WITH ORDINALITY AS t(n, i) ORDER BY i`,
    ),
    runningCounts: statement(
      "running_counts",
      `SELECT 'queue' AS kind, queue AS name, count(*)::int AS n FROM ${s}.jobs
       WHERE state = 'running' AND queue = ANY($1::text[]) GROUP BY queue
       UNION ALL
       SELECT 'key', concurrency_key, count(*)::int FROM ${s}.jobs
       WHERE state = 'running' AND concurrency_key = ANY($2::text[]) GROUP BY concurrency_key`,
    ),
    // Rows locked in id order, as completeMany's callers lock them: no deadlock between them.
    heartbeatMany: statement(
      "heartbeat_many",
      `WITH lease AS (
         SELECT * FROM unnest($1::bigint[], $2::int[], $3::text[]) AS l(id, attempt, worker)),
       held AS (
         SELECT j.id FROM lease
         CROSS JOIN LATERAL (
           -- Each row by its key, locked in the leases' order (by id; see completeSucceeded).
           SELECT j.id, j.attempt, j.worker_id, j.state FROM ${s}.jobs AS j
           WHERE j.id = lease.id OFFSET 0 FOR UPDATE
         ) AS j
         WHERE j.attempt = lease.attempt AND j.worker_id = lease.worker AND j.state = 'running')
       UPDATE ${s}.jobs AS j SET lease_expires_at = $4 FROM held WHERE j.id = held.id
       RETURNING j.id, j.attempt, j.worker_id, j.cancel_requested`,
    ),
    lockOutcomeRows: statement(
      "lock_outcome_rows",
      `SELECT ${OUTCOME_COLUMNS} FROM ${s}.jobs WHERE id = ANY($1::bigint[]) ORDER BY id FOR UPDATE`,
    ),
    // The rows were locked and found running that attempt by lockOutcomeRows (as in claimMany,
    // no test of state to mislead the planner).
    completeMany: statement(
      "complete_many",
      `WITH input AS (
         SELECT * FROM json_to_recordset($1::json) AS t(id bigint, attempt int,
           worker_id text, started_at bigint, state text, run_at bigint, finished_at bigint,
           exit_code int, signal text, result text, failure_reason text, failure_message text)),
       attempts_done AS (
         INSERT INTO ${s}.attempts (job_id, attempt, worker_id, started_at, finished_at,
           exit_code, signal, failure_reason, failure_message)
         SELECT id, attempt, worker_id, started_at, $2, exit_code, signal, failure_reason,
           failure_message
         FROM input
         ON CONFLICT (job_id, attempt) DO UPDATE SET finished_at = excluded.finished_at,
           exit_code = excluded.exit_code, signal = excluded.signal,
           failure_reason = excluded.failure_reason, failure_message = excluded.failure_message),
       jobs_done AS (
         UPDATE ${s}.jobs AS j SET state = i.state, run_at = i.run_at,
           finished_at = i.finished_at, exit_code = i.exit_code, signal = i.signal,
           result = i.result, failure_reason = i.failure_reason,
           failure_message = i.failure_message,
           worker_id = CASE WHEN i.state = 'pending' THEN NULL ELSE j.worker_id END,
           lease_expires_at = NULL
         FROM input AS i WHERE j.id = i.id AND j.attempt = i.attempt
         RETURNING j.id, j.state, j.queue, j.concurrency_key),
       finished AS (
         SELECT pg_notify($3, json_build_object('type', 'jobs_finished',
             'jobIds', json_agg(id::text))::text)
         FROM (SELECT id, (row_number() OVER ()) / ${FINISHED_PER_NOTIFICATION} AS chunk
           FROM jobs_done) AS d
         GROUP BY chunk),
       -- Work may be available: a job went back to pending, or one freed a limited slot.
       available AS (
         SELECT pg_notify($3, '{"type":"job_available"}')
         WHERE EXISTS (SELECT FROM jobs_done AS d
           WHERE d.state = 'pending' OR ${holdsLimitedSlot(`${s}.`, "d")}))
       SELECT (SELECT count(*) FROM jobs_done)::int AS done,
         (SELECT count(*) FROM finished)::int AS finished,
         (SELECT count(*) FROM available)::int AS available`,
    ),
    // Arrays of [id, attempt, exit code, result] in id order; answers the jobs it ended.
    completeSucceeded: statement(
      "complete_succeeded",
      `WITH input AS (
         SELECT (u ->> 0)::bigint AS id, (u ->> 1)::int AS attempt, (u ->> 2)::int AS exit_code,
           u ->> 3 AS result
         FROM json_array_elements($1::json) AS u),
       locked AS (
         SELECT l.id, i.exit_code, i.result FROM input AS i
         CROSS JOIN LATERAL (
           -- OFFSET 0 keeps the fence out of this lookup: with it, the planner may walk an
           -- index of running jobs for each row rather than take the row by its key.
           SELECT j.id, j.attempt, j.state FROM ${s}.jobs AS j WHERE j.id = i.id
           OFFSET 0 FOR UPDATE
         ) AS l
         WHERE l.attempt = i.attempt AND l.state = 'running'),
       jobs_done AS (
         UPDATE ${s}.jobs AS j SET state = 'succeeded', finished_at = $2,
           exit_code = l.exit_code, signal = NULL, result = l.result, failure_reason = NULL,
           failure_message = NULL, lease_expires_at = NULL
         FROM locked AS l WHERE j.id = l.id
         RETURNING j.id, j.attempt, j.worker_id, j.started_at, j.exit_code, j.queue,
           j.concurrency_key),
       attempts_done AS (
         INSERT INTO ${s}.attempts (job_id, attempt, worker_id, started_at, finished_at,
           exit_code)
         SELECT id, attempt, worker_id, started_at, $2, exit_code FROM jobs_done
         ON CONFLICT (job_id, attempt) DO UPDATE SET finished_at = excluded.finished_at,
           exit_code = excluded.exit_code, signal = NULL, failure_reason = NULL,
           failure_message = NULL),
       finished AS (
         SELECT pg_notify($3, json_build_object('type', 'jobs_finished',
             'jobIds', json_agg(id::text))::text)
         FROM (SELECT id, (row_number() OVER ()) / ${FINISHED_PER_NOTIFICATION} AS chunk
           FROM jobs_done) AS d
         GROUP BY chunk),
       -- A job that freed a limited slot may let a job held back by that limit run.
       available AS (
         SELECT pg_notify($3, '{"type":"job_available"}')
         WHERE EXISTS (SELECT FROM jobs_done AS d WHERE ${holdsLimitedSlot(`${s}.`, "d")}))
       SELECT id, (SELECT count(*) FROM available)::int AS available
       FROM jobs_done, (SELECT count(*) FROM finished) AS n`,
    ),
    states: statement("states", `SELECT id, state FROM ${s}.jobs WHERE id = ANY($1::bigint[])`),
    heartbeat: statement(
      "heartbeat",
      `UPDATE ${s}.jobs SET lease_expires_at = $4 WHERE ${held} RETURNING cancel_requested`,
    ),
    logState: statement(
      "log_state",
      `SELECT log_seq, log_bytes, max_log_bytes, log_dropped_lines FROM ${s}.jobs
       WHERE ${held} FOR UPDATE`,
    ),
    insertLogs: statement(
      "insert_logs",
      `INSERT INTO ${s}.job_logs (job_id, attempt, seq, stream, line, ts, kind, data, cut)
       SELECT $1, $2, * FROM unnest($3::bigint[], $4::text[], $5::text[], $6::bigint[],
         $7::text[], $8::text[], $9::int[])`,
    ),
    updateLogState: statement(
      "update_log_state",
      `UPDATE ${s}.jobs SET log_seq = $2, log_bytes = $3,
         log_dropped_lines = log_dropped_lines + $4, log_dropped_bytes = log_dropped_bytes + $5,
         progress = COALESCE($6, progress), output_offsets = COALESCE($7, output_offsets)
       WHERE id = $1`,
    ),
    // An attempt's row, written when it ends; one written at its start by a Baton before
    // schema version 6 is completed.
    finishAttempt: statement(
      "finish_attempt",
      `INSERT INTO ${s}.attempts (job_id, attempt, worker_id, started_at, finished_at,
         exit_code, signal, failure_reason, failure_message)
       VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)
       ON CONFLICT (job_id, attempt) DO UPDATE SET finished_at = excluded.finished_at,
         exit_code = excluded.exit_code, signal = excluded.signal,
         failure_reason = excluded.failure_reason, failure_message = excluded.failure_message`,
    ),
    applyNextState: statement(
      "apply_next_state",
      `UPDATE ${s}.jobs SET state = $3, run_at = $4, finished_at = $5, exit_code = $6,
         signal = $7, result = $8, failure_reason = $9, failure_message = $10,
         worker_id = CASE WHEN $3 = 'pending' THEN NULL ELSE worker_id END,
         lease_expires_at = NULL
       WHERE id = $1 AND attempt = $2 AND state = 'running'`,
    ),
    release: statement(
      "release",
      `UPDATE ${s}.jobs SET state = 'pending', attempts_used = attempts_used - 1,
         worker_id = NULL, lease_expires_at = NULL, started_at = NULL
       WHERE ${held} RETURNING *`,
    ),
    heldBy: statement(
      "held_by",
      `SELECT * FROM ${s}.jobs WHERE worker_id = $1 AND state = 'running'`,
    ),
    cancelRequests: statement(
      "cancel_requests",
      `SELECT id, attempt FROM ${s}.jobs
       WHERE worker_id = $1 AND state = 'running' AND cancel_requested = 1`,
    ),
    cancelWaiting: statement(
      "cancel_waiting",
      `UPDATE ${s}.jobs SET state = 'cancelled', finished_at = $2, cancel_requested = 1,
         failure_reason = 'cancelled', failure_message = 'cancelled by request'
       WHERE id = $1 AND state IN ('pending', 'blocked')`,
    ),
    requestCancel: statement(
      "request_cancel",
      `UPDATE ${s}.jobs SET cancel_requested = 1 WHERE id = $1 AND state = 'running'`,
    ),
    expired: statement(
      "expired",
      `SELECT * FROM ${s}.jobs WHERE state = 'running' AND lease_expires_at < $1
       ORDER BY lease_expires_at FOR UPDATE SKIP LOCKED`,
    ),
    readLogs: statement(
      "read_logs",
      `SELECT seq, attempt, stream, line, ts, kind, data, cut FROM ${s}.job_logs
       WHERE job_id = $1 AND seq > $2
         AND ($3::int IS NULL OR attempt = $3) AND ($4::text IS NULL OR stream = $4)
       ORDER BY seq LIMIT $5`,
    ),
    pruneLogs: statement(
      "prune_logs",
      `WITH chosen AS (
         SELECT id FROM ${s}.jobs
         WHERE finished_at IS NOT NULL AND logs_pruned_at IS NULL AND finished_at < $1
           AND state IN ('succeeded', 'failed', 'cancelled')
         LIMIT $2 FOR UPDATE SKIP LOCKED),
       removed AS (
         DELETE FROM ${s}.job_logs WHERE job_id IN (SELECT id FROM chosen)),
       marked AS (
         UPDATE ${s}.jobs SET logs_pruned_at = $3 WHERE id IN (SELECT id FROM chosen)
         RETURNING id)
       SELECT count(*)::int AS pruned FROM marked`,
    ),
    schedule: statement("schedule", `SELECT * FROM ${s}.schedules WHERE name = $1`),
    lockSchedule: statement(
      "lock_schedule",
      `SELECT * FROM ${s}.schedules WHERE name = $1 FOR UPDATE`,
    ),
    schedules: statement("schedules", `SELECT * FROM ${s}.schedules ORDER BY name`),
    // A replaced schedule keeps its next firing unless its expression or time zone changed;
    // xmax = 0 only on a row this statement inserted.
    upsertSchedule: statement(
      "upsert_schedule",
      `INSERT INTO ${s}.schedules AS old (name, cron, timezone, missed, job, next_fire_at,
         created_at)
       VALUES ($1, $2, $3, $4, $5, $6, $7)
       ON CONFLICT (name) DO UPDATE SET
         next_fire_at = CASE WHEN old.cron = excluded.cron AND old.timezone = excluded.timezone
           THEN old.next_fire_at ELSE excluded.next_fire_at END,
         cron = excluded.cron, timezone = excluded.timezone, missed = excluded.missed,
         job = excluded.job
       RETURNING *, (xmax = 0) AS inserted`,
    ),
    setSchedulePaused: statement(
      "set_schedule_paused",
      `UPDATE ${s}.schedules SET paused = $2 WHERE name = $1 RETURNING *`,
    ),
    deleteSchedule: statement("delete_schedule", `DELETE FROM ${s}.schedules WHERE name = $1`),
    dueSchedule: statement(
      "due_schedule",
      `SELECT * FROM ${s}.schedules WHERE paused = 0 AND next_fire_at <= $1
       ORDER BY next_fire_at LIMIT 1 FOR UPDATE SKIP LOCKED`,
    ),
    // The compare-and-set that makes a firing happen once: only the party that moves
    // next_fire_at on from the due time it read creates the job.
    advanceSchedule: statement(
      "advance_schedule",
      `UPDATE ${s}.schedules SET next_fire_at = $3,
         last_fired_at = COALESCE($4, last_fired_at)
       WHERE name = $1 AND next_fire_at = $2`,
    ),
    setScheduleJob: statement(
      "set_schedule_job",
      `UPDATE ${s}.schedules SET last_job_id = $2 WHERE name = $1`,
    ),
    notify: statement("notify", "SELECT pg_notify($1, $2)"),
    // A job's attempt ended (its row written): it finished, and work is available if it went
    // back to pending or freed a limited slot.
    announceEnd: statement(
      "announce_end",
      `WITH available AS (
         SELECT pg_notify($1, '{"type":"job_available"}') FROM ${s}.jobs AS j
         WHERE j.id = $2 AND (j.state = 'pending' OR ${holdsLimitedSlot(`${s}.`, "j")}))
       SELECT pg_notify($1, json_build_object('type', 'job_finished', 'jobId', $2::text)::text),
         (SELECT count(*) FROM available)::int AS available`,
    ),
    releaseIdempotencyKey: statement(
      "release_idempotency_key",
      `UPDATE ${s}.jobs SET idempotency_key = NULL WHERE id = $1`,
    ),
    retryableInQueue: statement(
      "retryable_in_queue",
      `SELECT * FROM ${s}.jobs WHERE state = ANY($1::text[]) AND ($2::text IS NULL OR queue = $2)
       ORDER BY id FOR UPDATE`,
    ),
    retryableByIds: statement(
      "retryable_by_ids",
      `SELECT * FROM ${s}.jobs WHERE state = ANY($1::text[]) AND id = ANY($2::bigint[])
       ORDER BY id FOR UPDATE`,
    ),
    // A fresh set of attempts; the history (attempts, logs) stays.
    requeue: statement(
      "requeue",
      `UPDATE ${s}.jobs SET state = 'pending', attempts_used = 0, run_at = $2, finished_at = NULL,
         exit_code = NULL, signal = NULL, result = NULL, failure_reason = NULL,
         failure_message = NULL, cancel_requested = 0, worker_id = NULL,
         lease_expires_at = NULL, progress = NULL, replays = $3
       WHERE id = $1`,
    ),
    registerWorker: statement(
      "register_worker",
      `INSERT INTO ${s}.workers (name, host, pid, queues, concurrency, cpus, memory_mb, ttl_ms,
         drain, started_at, last_seen_at, runs)
       VALUES ($1, $2, $3, $4, $5, $6, $7, $8, 0, $9, $9, $10)
       ON CONFLICT (name) DO UPDATE SET host = excluded.host, pid = excluded.pid,
         queues = excluded.queues, runs = excluded.runs, concurrency = excluded.concurrency, cpus = excluded.cpus,
         memory_mb = excluded.memory_mb, ttl_ms = excluded.ttl_ms, drain = 0,
         started_at = excluded.started_at, last_seen_at = excluded.last_seen_at,
         stopped_at = NULL
       RETURNING concurrency, drain`,
    ),
    beatWorker: statement(
      "beat_worker",
      `INSERT INTO ${s}.workers (name, host, pid, queues, concurrency, cpus, memory_mb, ttl_ms,
         drain, started_at, last_seen_at, runs)
       VALUES ($1, $2, $3, $4, $5, $6, $7, $8, 0, $9, $9, $10)
       ON CONFLICT (name) DO UPDATE SET last_seen_at = excluded.last_seen_at
       RETURNING concurrency, drain`,
    ),
    stopWorker: statement("stop_worker", `UPDATE ${s}.workers SET stopped_at = $2 WHERE name = $1`),
    workers: statement(
      "workers",
      `SELECT * FROM ${s}.workers WHERE last_seen_at >= $1 ORDER BY name`,
    ),
    runningJobs: statement(
      "running_jobs",
      `SELECT id, worker_id, cpus, memory_mb FROM ${s}.jobs WHERE state = 'running' ORDER BY id`,
    ),
    updateWorker: statement(
      "update_worker",
      `UPDATE ${s}.workers SET concurrency = COALESCE($2, concurrency),
         drain = COALESCE($3, drain)
       WHERE name = $1`,
    ),
    queueCounts: statement("queue_counts", queueCountsSql(`${s}.jobs`, "$1")),
    runTimes: statement("run_times", runTimesSql(`${s}.jobs`, "$1")),
    queueHolders: statement(
      "queue_holders",
      `SELECT id FROM ${s}.jobs WHERE state = 'running' AND queue = $1 ORDER BY id LIMIT 100`,
    ),
    keyHolders: statement(
      "key_holders",
      `SELECT id FROM ${s}.jobs WHERE state = 'running' AND concurrency_key = $1 ORDER BY id`,
    ),
    ahead: statement(
      "ahead",
      `SELECT count(*)::int AS n FROM ${s}.jobs
       WHERE state = 'pending' AND queue = $1 AND run_at <= $2
         AND (priority < $3 OR (priority = $3 AND (run_at < $4 OR (run_at = $4 AND id < $5))))`,
    ),
    // As in the SQLite store: queue names by a skip scan of jobs_queue, the counts from
    // the partial indexes of pending and running jobs, never every job a queue ever had.
    queues: statement(
      "queues",
      `WITH RECURSIVE used (name) AS (
         SELECT min(queue) FROM ${s}.jobs
         UNION ALL
         SELECT (SELECT min(queue) FROM ${s}.jobs WHERE queue > used.name) FROM used
         WHERE used.name IS NOT NULL),
       pending AS (
         SELECT queue AS name, count(*)::int AS n FROM ${s}.jobs
         WHERE state = 'pending' GROUP BY queue),
       running AS (
         SELECT queue AS name, count(*)::int AS n FROM ${s}.jobs
         WHERE state = 'running' GROUP BY queue)
       SELECT n.name, COALESCE(q.paused, 0) AS paused, q.max_running,
         COALESCE(running.n, 0) AS running, COALESCE(pending.n, 0) AS pending
       FROM (SELECT name FROM ${s}.queues UNION SELECT name FROM used WHERE name IS NOT NULL) AS n
       LEFT JOIN ${s}.queues AS q ON q.name = n.name
       LEFT JOIN pending ON pending.name = n.name
       LEFT JOIN running ON running.name = n.name
       ORDER BY n.name`,
    ),
    queue: statement(
      "queue",
      `SELECT $1::text AS name, COALESCE(q.paused, 0) AS paused, q.max_running,
         (SELECT count(*)::int FROM ${s}.jobs WHERE queue = $1 AND state = 'running') AS running,
         (SELECT count(*)::int FROM ${s}.jobs WHERE queue = $1 AND state = 'pending') AS pending
       FROM (SELECT 1) AS one LEFT JOIN ${s}.queues AS q ON q.name = $1`,
    ),
    upsertQueue: statement(
      "upsert_queue",
      `INSERT INTO ${s}.queues (name, paused, max_running) VALUES ($1, COALESCE($2, 0), $3)
       ON CONFLICT (name) DO UPDATE SET
         paused = COALESCE($2, ${s}.queues.paused),
         max_running = CASE WHEN $4 THEN $3 ELSE ${s}.queues.max_running END`,
    ),
  };
}
