import { join } from "node:path";
import pg from "pg";
import {
  migrate as migratePostgres,
  MIGRATIONS as POSTGRES_MIGRATIONS,
} from "../../src/store/postgres/migrations.js";
import { PostgresStore } from "../../src/store/postgres/postgresStore.js";
import { migrate as migrateSqlite } from "../../src/store/sqlite/migrate.js";
import { MIGRATIONS as SQLITE_MIGRATIONS } from "../../src/store/sqlite/migrations.js";
import { SqliteStore } from "../../src/store/sqlite/sqliteStore.js";
import type { Store } from "../../src/store/store.js";
import { tempDir } from "./processes.js";

export const PG_URL = process.env.BATON_TEST_PG_URL ?? "postgres://postgres@127.0.0.1:5432/test";

let reachable: Promise<boolean> | null = null;

/**
 * Whether the test PostgreSQL answers. When it does not, PostgreSQL tests are skipped with
 * a message saying so, except under CI=true, where they must run: then this throws.
 */
export function postgresAvailable(): Promise<boolean> {
  reachable ??= (async () => {
    const client = new pg.Client({ connectionString: PG_URL, connectionTimeoutMillis: 3_000 });
    try {
      await client.connect();
      await client.end();
      return true;
    } catch (error) {
      const why = `PostgreSQL at ${PG_URL} is unreachable (${(error as Error).message})`;
      if (process.env.CI === "true") throw new Error(`${why}; CI requires it`);
      process.stderr.write(`skipping PostgreSQL tests: ${why}\n`);
      return false;
    }
  })();
  return reachable;
}

/** A fresh, unique schema name for one test. */
export function testSchema(): string {
  return `t_${process.pid}_${Math.random().toString(36).slice(2, 10)}`;
}

export async function dropSchema(schema: string): Promise<void> {
  const client = new pg.Client({ connectionString: PG_URL });
  await client.connect();
  try {
    await client.query(`DROP SCHEMA IF EXISTS ${schema} CASCADE`);
  } finally {
    await client.end();
  }
}

export interface StoreOptions {
  now?: () => number;
  random?: () => number;
  idempotencyRetentionMs?: number;
}

/** One kind of store for the conformance suite: a fresh database per test, any connections. */
export interface Backend {
  name: string;
  /** Prepares a fresh, empty database. */
  setup(): Promise<void>;
  /** A connection (store instance) to that database; several may be open at once. */
  open(options?: StoreOptions): Promise<Store>;
  /** Makes the database look migrated by a newer Baton. */
  markNewerSchema(): Promise<void>;
  /**
   * Creates the database with every migration before the one named `name` (as a Baton that
   * did not have that migration left it), to test that migration.
   */
  migrateUpTo(name: string): Promise<void>;
  /** Runs SQL on the database as it is (in the store's schema). */
  exec(sql: string): Promise<void>;
  /** Removes the database. */
  teardown(): Promise<void>;
  /** The URL a Baton process would use for this database, with its schema flag. */
  url(): { store: string; args: string[] };
}

export function sqliteBackend(): Backend {
  let dir: ReturnType<typeof tempDir> | null = null;
  const path = () => join(dir?.path ?? "", "baton.db");
  return {
    name: "sqlite",
    async setup() {
      dir = tempDir();
    },
    async open(options = {}) {
      return new SqliteStore({ path: path(), ...options });
    },
    async markNewerSchema() {
      const Database = (await import("better-sqlite3")).default;
      const raw = new Database(path());
      raw
        .prepare(
          "INSERT INTO schema_migrations (version, name, applied_at) VALUES (999, 'future', 0)",
        )
        .run();
      raw.close();
    },
    async migrateUpTo(name) {
      const Database = (await import("better-sqlite3")).default;
      const raw = new Database(path());
      migrateSqlite(raw, path(), before(SQLITE_MIGRATIONS, name));
      raw.close();
    },
    async exec(sql) {
      const Database = (await import("better-sqlite3")).default;
      const raw = new Database(path());
      raw.exec(sql);
      raw.close();
    },
    async teardown() {
      dir?.remove();
    },
    url: () => ({ store: `sqlite:${path()}`, args: [] }),
  };
}

export function postgresBackend(): Backend {
  let schema = "";
  return {
    name: "postgres",
    async setup() {
      schema = testSchema();
    },
    async open(options = {}) {
      return PostgresStore.open({ url: PG_URL, schema, maxConnections: 4, ...options });
    },
    async markNewerSchema() {
      const client = new pg.Client({ connectionString: PG_URL });
      await client.connect();
      await client.query(
        `INSERT INTO ${schema}.schema_migrations (version, name, applied_at) VALUES (999, 'future', 0)`,
      );
      await client.end();
    },
    async migrateUpTo(name) {
      await withClient((client) =>
        migratePostgres(client, schema, before(POSTGRES_MIGRATIONS, name)),
      );
    },
    async exec(sql) {
      await withClient((client) => client.query(`SET search_path TO ${schema}; ${sql}`));
    },
    async teardown() {
      await dropSchema(schema);
    },
    url: () => ({ store: PG_URL, args: ["--schema", schema] }),
  };
}

/** The migrations before the one whose name starts with `name` (which must exist). */
function before<M extends { name: string }>(migrations: readonly M[], name: string): M[] {
  const at = migrations.findIndex((migration) => migration.name.startsWith(name));
  if (at < 0) throw new Error(`no migration named ${name}`);
  return migrations.slice(0, at);
}

async function withClient(use: (client: pg.Client) => Promise<unknown>): Promise<void> {
  const client = new pg.Client({ connectionString: PG_URL });
  await client.connect();
  try {
    await use(client);
  } finally {
    await client.end();
  }
}

/** SQLite always; PostgreSQL when reachable (always under CI). */
export async function backends(): Promise<Backend[]> {
  return (await postgresAvailable()) ? [sqliteBackend(), postgresBackend()] : [sqliteBackend()];
}
