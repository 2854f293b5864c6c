import type pg from "pg";
import {
  HANDLER_COLUMN,
  type Migration,
  poolMigration,
  QUEUES_AND_KEYS,
  WORKER_RUNS,
} from "../sqlite/migrations.js";

/**
 * Numbered migrations of the PostgreSQL store, applied in the store's own schema. Never edit
 * one that has shipped: add the next. Times are epoch milliseconds (BIGINT), and columns
 * mirror the SQLite store's, so that both read rows the same way.
 */
/** Cron schedules, as in the SQLite store (times and ids as BIGINT). */
export const SCHEDULES = `
  CREATE TABLE schedules (
    name          TEXT    PRIMARY KEY,
    cron          TEXT    NOT NULL,
    timezone      TEXT    NOT NULL,
    missed        TEXT    NOT NULL,
    paused        INTEGER NOT NULL DEFAULT 0,
    job           TEXT    NOT NULL,
    next_fire_at  BIGINT,
    last_fired_at BIGINT,
    last_job_id   BIGINT,
    created_at    BIGINT  NOT NULL
  );
  CREATE INDEX schedules_due ON schedules (next_fire_at) WHERE paused = 0;
`;

export const MIGRATIONS: readonly Migration[] = [
  {
    version: 1,
    name: "jobs, attempts, logs",
    sql: `
      CREATE TABLE jobs (
        id                BIGSERIAL PRIMARY KEY,
        queue             TEXT    NOT NULL,
        kind              TEXT    NOT NULL,
        spec              TEXT    NOT NULL,
        labels            TEXT    NOT NULL,
        priority          INTEGER NOT NULL,
        cpus              DOUBLE PRECISION NOT NULL,
        memory_mb         INTEGER,
        timeout_ms        BIGINT,
        max_attempts      INTEGER NOT NULL,
        backoff_base_ms   BIGINT  NOT NULL,
        backoff_max_ms    BIGINT  NOT NULL,
        run_at            BIGINT  NOT NULL,
        idempotency_key   TEXT,
        state             TEXT    NOT NULL,
        attempt           INTEGER NOT NULL DEFAULT 0,
        attempts_used     INTEGER NOT NULL DEFAULT 0,
        worker_id         TEXT,
        lease_expires_at  BIGINT,
        cancel_requested  INTEGER NOT NULL DEFAULT 0,
        created_at        BIGINT  NOT NULL,
        started_at        BIGINT,
        finished_at       BIGINT,
        exit_code         INTEGER,
        signal            TEXT,
        result            TEXT,
        failure_reason    TEXT,
        failure_message   TEXT,
        log_seq           BIGINT  NOT NULL DEFAULT 0,
        workflow_id       TEXT,
        step              TEXT,
        output_offsets    TEXT,
        progress          DOUBLE PRECISION,
        max_log_bytes     BIGINT  NOT NULL,
        log_bytes         BIGINT  NOT NULL DEFAULT 0,
        log_dropped_lines BIGINT  NOT NULL DEFAULT 0,
        log_dropped_bytes BIGINT  NOT NULL DEFAULT 0,
        logs_pruned_at    BIGINT
      );
      CREATE INDEX jobs_ready ON jobs (priority, run_at, id) WHERE state = 'pending';
      CREATE INDEX jobs_lease ON jobs (lease_expires_at) WHERE state = 'running';
      CREATE INDEX jobs_worker ON jobs (worker_id) WHERE state = 'running';
      CREATE INDEX jobs_state ON jobs (state, id);
      CREATE INDEX jobs_queue ON jobs (queue, id);
      CREATE UNIQUE INDEX jobs_idempotency ON jobs (idempotency_key)
        WHERE idempotency_key IS NOT NULL;
      CREATE INDEX jobs_finished ON jobs (finished_at)
        WHERE finished_at IS NOT NULL AND logs_pruned_at IS NULL;

      CREATE TABLE attempts (
        job_id          BIGINT  NOT NULL REFERENCES jobs (id) ON DELETE CASCADE,
        attempt         INTEGER NOT NULL,
        worker_id       TEXT    NOT NULL,
        started_at      BIGINT  NOT NULL,
        finished_at     BIGINT,
        exit_code       INTEGER,
        signal          TEXT,
        failure_reason  TEXT,
        failure_message TEXT,
        PRIMARY KEY (job_id, attempt)
      );

      CREATE TABLE job_logs (
        job_id  BIGINT  NOT NULL REFERENCES jobs (id) ON DELETE CASCADE,
        seq     BIGINT  NOT NULL,
        attempt INTEGER NOT NULL,
        stream  TEXT    NOT NULL,
        line    TEXT    NOT NULL,
        ts      BIGINT  NOT NULL,
        kind    TEXT    NOT NULL,
        data    TEXT,
        cut     INTEGER NOT NULL,
        PRIMARY KEY (job_id, seq)
      );
    `,
  },
  { version: 2, name: "queues (pause, running limit) and concurrency keys", sql: QUEUES_AND_KEYS },
  {
    version: 3,
    name: "worker registry, replays",
    sql: poolMigration({ time: "BIGINT", real: "DOUBLE PRECISION" }),
  },
  { version: 4, name: "cron schedules", sql: SCHEDULES },
  { version: 5, name: "what each worker runs", sql: WORKER_RUNS },
  {
    version: 6,
    name: "the handler of handler jobs in a column; no foreign keys to jobs",
    sql: `${HANDLER_COLUMN("spec::jsonb ->> 'handler'")}
      -- Jobs are never deleted, so the keys only cost a check (a trigger) on every attempt and
      -- log row written: a sixth of what claiming and completing a job cost the server.
      ALTER TABLE attempts DROP CONSTRAINT attempts_job_id_fkey;
      ALTER TABLE job_logs DROP CONSTRAINT job_logs_job_id_fkey;`,
  },
];

/**
 * Applies the migrations this schema has not seen. Processes starting at once serialize on
 * an advisory lock named after the schema, so each migration runs exactly once; a schema
 * migrated by a newer Baton is refused. (`migrations`: all of them but for tests of a
 * migration, which stop short of it.)
 */
export async function migrate(
  client: pg.ClientBase,
  schema: string,
  migrations: readonly Migration[] = MIGRATIONS,
): Promise<void> {
  const lock = `baton migrations ${schema}`;
  await client.query("SELECT pg_advisory_lock(hashtext($1))", [lock]);
  try {
    await client.query(`CREATE SCHEMA IF NOT EXISTS ${schema}`);
    await client.query(`CREATE TABLE IF NOT EXISTS ${schema}.schema_migrations (
      version INTEGER PRIMARY KEY, name TEXT NOT NULL, applied_at BIGINT NOT NULL)`);
    const { rows } = await client.query<{ version: number }>(
      `SELECT COALESCE(MAX(version), 0)::int AS version FROM ${schema}.schema_migrations`,
    );
    const current = rows[0]?.version ?? 0;
    const latest = migrations.at(-1)?.version ?? 0;
    if (current > latest) {
      throw new Error(
        `schema ${schema} has version ${current}, newer than this Baton knows (${latest}); ` +
          "upgrade Baton before using this database",
      );
    }
    for (const migration of migrations) {
      if (migration.version <= current) continue;
      await client.query("BEGIN");
      try {
        await client.query(`SET LOCAL search_path TO ${schema}`);
        await client.query(migration.sql);
        await client.query(
          `INSERT INTO ${schema}.schema_migrations (version, name, applied_at) VALUES ($1, $2, $3)`,
          [migration.version, migration.name, Date.now()],
        );
        await client.query("COMMIT");
      } catch (error) {
        await client.query("ROLLBACK");
        throw error;
      }
    }
  } finally {
    await client.query("SELECT pg_advisory_unlock(hashtext($1))", [lock]);
  }
}
