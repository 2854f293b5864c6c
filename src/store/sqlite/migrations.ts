/**
 * Numbered migrations of the SQLite store. Never edit one that has shipped: add the next.
 * Columns holding times are epoch milliseconds.
 */
export interface Migration {
  version: number;
  name: string;
  sql: string;
}

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
];
