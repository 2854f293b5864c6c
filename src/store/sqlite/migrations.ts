/**
 * Numbered migrations of the SQLite store. Never edit one that has shipped: add the next.
 * Columns holding times are epoch milliseconds.
 */
export interface Migration {
  version: number;
  name: string;
  sql: string;
}

/** The same in both stores' dialects. */
export const QUEUES_AND_KEYS = `
  CREATE TABLE queues (
    name        TEXT PRIMARY KEY,
    paused      INTEGER NOT NULL DEFAULT 0,
    -- Most jobs of the queue running at once across all workers; NULL: no limit.
    max_running INTEGER
  );
  ALTER TABLE jobs ADD COLUMN concurrency_key TEXT;
  ALTER TABLE jobs ADD COLUMN concurrency_limit INTEGER NOT NULL DEFAULT 1;
  CREATE INDEX jobs_running_queue ON jobs (queue) WHERE state = 'running';
  CREATE INDEX jobs_running_key ON jobs (concurrency_key)
    WHERE state = 'running' AND concurrency_key IS NOT NULL;
`;

/** The worker registry, replays, and what stats read; times as each dialect keeps them. */
export function poolMigration(types: { time: string; real: string }): string {
  return `
  CREATE TABLE workers (
    name         TEXT PRIMARY KEY,
    host         TEXT    NOT NULL,
    pid          INTEGER NOT NULL,
    -- JSON array of queue names; NULL: every queue.
    queues       TEXT,
    concurrency  INTEGER NOT NULL,
    cpus         ${types.real} NOT NULL,
    memory_mb    INTEGER,
    -- Silent for longer than this, the worker is counted lost.
    ttl_ms       ${types.time} NOT NULL,
    drain        INTEGER NOT NULL DEFAULT 0,
    started_at   ${types.time} NOT NULL,
    last_seen_at ${types.time} NOT NULL,
    stopped_at   ${types.time}
  );
  -- JSON array of {at, afterAttempt, failure}: each time the job was put back in line.
  ALTER TABLE jobs ADD COLUMN replays TEXT;
  CREATE INDEX jobs_finished_at ON jobs (finished_at) WHERE finished_at IS NOT NULL;
`;
}

/** What each worker runs: {"shell": bool, "handlers": [names]}; NULL: not told. */
export const WORKER_RUNS = "ALTER TABLE workers ADD COLUMN runs TEXT;";

/** Cron schedules: each row is a schedule and the next firing nobody has handled yet. */
export const SCHEDULES = `
  CREATE TABLE schedules (
    name          TEXT    PRIMARY KEY,
    cron          TEXT    NOT NULL,
    timezone      TEXT    NOT NULL,
    -- skip or run-once: what happens to firings nobody handled in time
    missed        TEXT    NOT NULL,
    paused        INTEGER NOT NULL DEFAULT 0,
    -- the job each firing submits, as JSON the way POST /v1/jobs takes it
    job           TEXT    NOT NULL,
    -- NULL: the expression never fires again
    next_fire_at  INTEGER,
    last_fired_at INTEGER,
    last_job_id   INTEGER,
    created_at    INTEGER NOT NULL
  );
  CREATE INDEX schedules_due ON schedules (next_fire_at) WHERE paused = 0;
`;

/**
 * Claims of a worker running some handlers filter on the handler: from a column of its own
 * rather than by parsing each candidate's spec (payload included) as JSON.
 */
export const HANDLER_COLUMN = (fromSpec: string): string => `
  ALTER TABLE jobs ADD COLUMN handler TEXT;
  UPDATE jobs SET handler = ${fromSpec} WHERE kind = 'handler';
`;

export const MIGRATIONS: readonly Migration[] = [
  {
    version: 1,
    name: "jobs, attempts and logs",
    sql: `
      CREATE TABLE jobs (
        id               INTEGER PRIMARY KEY AUTOINCREMENT,
        queue            TEXT    NOT NULL,
        kind             TEXT    NOT NULL,
        -- what to run: {command, script, handler, payload, env, cwd}
        spec             TEXT    NOT NULL,
        labels           TEXT    NOT NULL,
        priority         INTEGER NOT NULL,
        cpus             REAL    NOT NULL,
        memory_mb        INTEGER,
        timeout_ms       INTEGER,
        max_attempts     INTEGER NOT NULL,
        backoff_base_ms  INTEGER NOT NULL,
        backoff_max_ms   INTEGER NOT NULL,
        run_at           INTEGER NOT NULL,
        idempotency_key  TEXT,
        state            TEXT    NOT NULL,
        attempt          INTEGER NOT NULL DEFAULT 0,
        attempts_used    INTEGER NOT NULL DEFAULT 0,
        worker_id        TEXT,
        lease_expires_at INTEGER,
        cancel_requested INTEGER NOT NULL DEFAULT 0,
        created_at       INTEGER NOT NULL,
        started_at       INTEGER,
        finished_at      INTEGER,
        exit_code        INTEGER,
        signal           TEXT,
        result           TEXT,
        failure_reason   TEXT,
        failure_message  TEXT,
        log_seq          INTEGER NOT NULL DEFAULT 0,
        workflow_id      TEXT,
        step             TEXT
      );
      CREATE INDEX jobs_ready ON jobs (priority, run_at, id) WHERE state = 'pending';
      CREATE INDEX jobs_lease ON jobs (lease_expires_at) WHERE state = 'running';
      CREATE INDEX jobs_worker ON jobs (worker_id) WHERE state = 'running';
      CREATE INDEX jobs_state ON jobs (state, id);
      CREATE INDEX jobs_queue ON jobs (queue, id);
      CREATE UNIQUE INDEX jobs_idempotency ON jobs (idempotency_key)
        WHERE idempotency_key IS NOT NULL;

      CREATE TABLE attempts (
        job_id          INTEGER NOT NULL REFERENCES jobs (id) ON DELETE CASCADE,
        attempt         INTEGER NOT NULL,
        worker_id       TEXT    NOT NULL,
        started_at      INTEGER NOT NULL,
        finished_at     INTEGER,
        exit_code       INTEGER,
        signal          TEXT,
        failure_reason  TEXT,
        failure_message TEXT,
        PRIMARY KEY (job_id, attempt)
      ) WITHOUT ROWID;

      CREATE TABLE job_logs (
        job_id  INTEGER NOT NULL REFERENCES jobs (id) ON DELETE CASCADE,
        seq     INTEGER NOT NULL,
        attempt INTEGER NOT NULL,
        stream  TEXT    NOT NULL,
        line    TEXT    NOT NULL,
        ts      INTEGER NOT NULL,
        PRIMARY KEY (job_id, seq)
      ) WITHOUT ROWID;
    `,
  },
  {
    version: 2,
    name: "stored output offsets of the running attempt",
    sql: `
      -- Bytes of each stream of the current attempt's output that are stored, as
      -- {"stdout":N,"stderr":N}: where a restarted worker resumes when it adopts the attempt.
      ALTER TABLE jobs ADD COLUMN output_offsets TEXT;
    `,
  },
  {
    version: 3,
    name: "output events, progress, output cap and log retention",
    sql: `
      -- kind: line, progress, event, warning or truncated; data: JSON of progress and events;
      -- cut: the line was cut at the length limit and continues in the next event.
      ALTER TABLE job_logs ADD COLUMN kind TEXT NOT NULL DEFAULT 'line';
      ALTER TABLE job_logs ADD COLUMN data TEXT;
      ALTER TABLE job_logs ADD COLUMN cut INTEGER NOT NULL DEFAULT 0;
      ALTER TABLE jobs ADD COLUMN progress REAL;
      ALTER TABLE jobs ADD COLUMN max_log_bytes INTEGER NOT NULL DEFAULT 67108864;
      ALTER TABLE jobs ADD COLUMN log_bytes INTEGER NOT NULL DEFAULT 0;
      ALTER TABLE jobs ADD COLUMN log_dropped_lines INTEGER NOT NULL DEFAULT 0;
      ALTER TABLE jobs ADD COLUMN log_dropped_bytes INTEGER NOT NULL DEFAULT 0;
      -- Set once retention removed the job's logs.
      ALTER TABLE jobs ADD COLUMN logs_pruned_at INTEGER;
      CREATE INDEX jobs_finished ON jobs (finished_at)
        WHERE finished_at IS NOT NULL AND logs_pruned_at IS NULL;
    `,
  },
  {
    version: 4,
    name: "queues (pause, running limit) and concurrency keys",
    sql: QUEUES_AND_KEYS,
  },
  {
    version: 5,
    name: "worker registry, replays",
    sql: poolMigration({ time: "INTEGER", real: "REAL" }),
  },
  { version: 6, name: "cron schedules", sql: SCHEDULES },
  { version: 7, name: "what each worker runs", sql: WORKER_RUNS },
  {
    version: 8,
    name: "pending jobs counted by queue from jobs_ready",
    sql: `
      -- With the queue in it, the index of pending jobs alone counts them by queue: the
      -- count no longer reads every job the queue ever had.
      DROP INDEX jobs_ready;
      CREATE INDEX jobs_ready ON jobs (priority, run_at, id, queue) WHERE state = 'pending';
    `,
  },
  {
    version: 9,
    name: "the handler of handler jobs in a column",
    sql: HANDLER_COLUMN("json_extract(spec, '$.handler')"),
  },
];
