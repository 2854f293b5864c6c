/**
 * What the queue benchmark (queueBench.ts) needs of a job queue, whichever it is: Baton,
 * Graphile Worker, pg-boss, BullMQ. One adapter is one system in one configuration (its
 * `variant`); the benchmark calls `setup()` before each measurement and `teardown()` after
 * it, so every measurement starts from an empty queue.
 */

import pg from "pg";

/** A job's payload: a small JSON object, passed through unchanged to the handler. */
export type Payload = Readonly<Record<string, unknown>>;

export interface QueueSystem {
  /** The product, e.g. "Graphile Worker", "pg-boss", "BullMQ", "Baton". */
  readonly system: string;
  /** The configuration: "defaults", or "tuned" for the system's own high-throughput advice. */
  readonly variant: string;
  /**
   * The worker concurrency this variant processes with. Absent: the benchmark's standard
   * concurrency (10). A tuned variant sets the figure its documentation recommends.
   */
  readonly concurrency?: number;
  /** One line naming the settings that differ from the system's defaults; "" for none. */
  readonly settings: string;
  /**
   * A floor measured for comparison, not a product (raw SQL doing the least a queue must):
   * shown in the table, never marked the best of a workload.
   */
  readonly reference?: boolean;
  /**
   * One line on what survives a crash in this setup (fsync, persistence), for the
   * honest-comparison note. May be completed by `setup()`, e.g. with facts the server reports.
   */
  durability: string;

  /**
   * Prepares a fresh, empty queue (its own PostgreSQL schema, Redis key prefix, data
   * directory, …) and opens what enqueueing needs. Called before each measurement.
   */
  setup(): Promise<void>;
  /** Enqueues one job; resolves once the system has accepted it. */
  enqueueOne(payload: Payload): Promise<void>;
  /** Enqueues jobs with the system's bulk API, in one call; resolves once all are accepted. */
  enqueueBatch(payloads: readonly Payload[]): Promise<void>;
  /**
   * Starts a worker in this process running at most `concurrency` jobs at once, with a
   * no-op handler that calls `onJob(payload)` as it starts. Resolves once the worker is
   * running.
   */
  startWorker(concurrency: number, onJob: (payload: Payload) => void): Promise<void>;
  /**
   * Jobs enqueued but not yet recorded as completed (waiting or running): 0 means the
   * queue's own store has every job finished, not just every handler run.
   */
  outstanding(): Promise<number>;
  /** Stops the worker started by `startWorker`, if any; nothing when none runs. */
  stopWorker(): Promise<void>;
  /**
   * Stops any worker, removes everything `setup()` made (schema, keys, files) and closes
   * every connection, so that the process can exit.
   */
  teardown(): Promise<void>;
}

/** "pg-boss (tuned)": how figures and tables name an adapter. */
export const systemLabel = (system: Pick<QueueSystem, "system" | "variant">): string =>
  `${system.system} (${system.variant})`;

// Helpers for adapters whose queue lives in PostgreSQL.

/** Runs statements on a connection of its own, closed afterwards. */
export async function withPostgres<T>(url: string, use: (client: pg.Client) => Promise<T>) {
  const client = new pg.Client({ connectionString: url });
  await client.connect();
  try {
    return await use(client);
  } finally {
    await client.end();
  }
}

/** Drops a schema and everything in it, if it exists. */
export async function dropSchema(url: string, schema: string): Promise<void> {
  await withPostgres(url, (client) =>
    client.query(`DROP SCHEMA IF EXISTS ${pg.escapeIdentifier(schema)} CASCADE`),
  );
}

/** The server's durability settings, as a clause: "PostgreSQL 15.2, fsync on, …". */
export async function postgresDurability(url: string): Promise<string> {
  return withPostgres(url, async (client) => {
    const show = async (name: string): Promise<string> => {
      const { rows } = await client.query<Record<string, string>>(`SHOW ${name}`);
      return Object.values(rows[0] ?? {})[0] ?? "?";
    };
    const version = await show("server_version");
    const fsync = await show("fsync");
    const commit = await show("synchronous_commit");
    return `PostgreSQL ${version.split(" ")[0]}, fsync ${fsync}, synchronous_commit ${commit}`;
  });
}
