/**
 * The floor under every PostgreSQL queue on this machine: the least a durable queue can do,
 * in raw SQL, as a reference beside the products. One table with one partial index; an
 * enqueue is one INSERT committed with its NOTIFY; a claim is one UPDATE of the oldest
 * pending rows (`FOR UPDATE SKIP LOCKED`), committed; a completion is one DELETE. Nothing
 * else: no retries, leases, heartbeats, priorities, limits, results or history. Each
 * statement is its own transaction, fsynced as the server is set; what Baton and the
 * peers do beyond this is what their features cost.
 */
import pg from "pg";
import { dropSchema, type Payload, postgresDurability, type QueueSystem } from "../queueSystems.js";

/** Most jobs one claim takes, as the tuned peers and Baton take at most 500. */
const BATCH = 500;
/** Claim loops, each on its own connection: one claims while the other completes. */
const LOOPS = 2;
/** Connections: the loops', the listener's and a few for enqueues. */
const POOL = LOOPS + 4;

export function postgresFloor({ url, schema }: { url: string; schema: string }): QueueSystem {
  const s = pg.escapeIdentifier(schema);
  const channel = `${schema}_jobs`;
  let pool: pg.Pool | null = null;
  let worker: FloorWorker | null = null;

  const open = (): pg.Pool => {
    if (!pool) throw new Error("PostgreSQL floor: setup() was not called");
    return pool;
  };

  const system: QueueSystem = {
    system: "PostgreSQL floor",
    reference: true,
    variant: "raw SQL",
    concurrency: 1_000,
    settings:
      `not a product: one INSERT with its NOTIFY, one UPDATE … SKIP LOCKED claiming up to ` +
      `${BATCH}, one DELETE per batch done; ${LOOPS} claim loops; ${POOL} connections in all, so ` +
      `its concurrent callers share a few and nothing groups their commits: no floor for those`,
    durability: "",

    async setup() {
      await dropSchema(url, schema);
      pool = new pg.Pool({ connectionString: url, max: POOL });
      await pool.query(`CREATE SCHEMA ${s}`);
      await pool.query(
        `CREATE TABLE ${s}.jobs (id bigserial PRIMARY KEY, payload jsonb NOT NULL,
           state text NOT NULL DEFAULT 'pending')`,
      );
      await pool.query(`CREATE INDEX jobs_pending ON ${s}.jobs (id) WHERE state = 'pending'`);
      system.durability = `${await postgresDurability(url)}: a job is on disk once its INSERT returns`;
    },

    async enqueueOne(payload) {
      await open().query({
        name: `${schema}_enqueue`,
        text: `WITH job AS (INSERT INTO ${s}.jobs (payload) VALUES ($1) RETURNING id)
               SELECT pg_notify($2, '') FROM job`,
        values: [payload, channel],
      });
    },

    async enqueueBatch(payloads) {
      await open().query({
        name: `${schema}_enqueue_batch`,
        text: `WITH jobs AS (INSERT INTO ${s}.jobs (payload) SELECT * FROM unnest($1::jsonb[])
                 RETURNING id)
               SELECT pg_notify($2, '') WHERE EXISTS (SELECT FROM jobs)`,
        values: [payloads.map((payload) => JSON.stringify(payload)), channel],
      });
    },

    async startWorker(concurrency, onJob) {
      if (worker) throw new Error("PostgreSQL floor: a worker is already running");
      worker = new FloorWorker(open(), s, channel, Math.min(BATCH, concurrency), onJob);
      await worker.start();
    },

    async outstanding() {
      const { rows } = await open().query<{ n: number }>(
        `SELECT count(*)::int AS n FROM ${s}.jobs`,
      );
      return rows[0]?.n ?? 0;
    },

    async stopWorker() {
      const stopping = worker;
      worker = null;
      await stopping?.stop();
    },

    async teardown() {
      await system.stopWorker();
      const closing = pool;
      pool = null;
      await closing?.end();
      await dropSchema(url, schema);
    },
  };
  return system;
}

/** Claim loops woken by the channel's NOTIFY; each runs its batch, then deletes it. */
class FloorWorker {
  private listener: pg.PoolClient | null = null;
  private stopped = false;
  /** Per loop: a wake-up came while it was busy, so it claims again before it sleeps. */
  private readonly woken: boolean[] = Array.from({ length: LOOPS }, () => true);
  private readonly sleepers: Array<(() => void) | null> = Array.from({ length: LOOPS }, () => null);
  private loops: Promise<void>[] = [];

  constructor(
    private readonly pool: pg.Pool,
    private readonly s: string,
    private readonly channel: string,
    private readonly batch: number,
    private readonly onJob: (payload: Payload) => void,
  ) {}

  async start(): Promise<void> {
    this.listener = await this.pool.connect();
    this.listener.on("notification", () => this.wake());
    await this.listener.query(`LISTEN ${pg.escapeIdentifier(this.channel)}`);
    this.loops = this.woken.map((_, i) => this.loop(i));
  }

  async stop(): Promise<void> {
    this.stopped = true;
    this.wake();
    await Promise.all(this.loops);
    // Its LISTEN goes with it, rather than back into the pool.
    this.listener?.release(true);
    this.listener = null;
  }

  private wake(): void {
    this.woken.fill(true);
    for (const [i, resume] of this.sleepers.entries()) {
      this.sleepers[i] = null;
      resume?.();
    }
  }

  private async loop(i: number): Promise<void> {
    const client = await this.pool.connect();
    try {
      while (!this.stopped) {
        if (!this.woken[i]) {
          await new Promise<void>((resume) => (this.sleepers[i] = resume));
          continue;
        }
        this.woken[i] = false;
        const { rows } = await client.query<{ id: string; payload: Payload }>({
          name: "floor_claim",
          text: `UPDATE ${this.s}.jobs SET state = 'running' WHERE id IN (
                   SELECT id FROM ${this.s}.jobs WHERE state = 'pending'
                   ORDER BY id LIMIT $1 FOR UPDATE SKIP LOCKED)
                 RETURNING id, payload`,
          values: [this.batch],
        });
        if (rows.length === 0) continue;
        // A full batch may have left more behind: claim again without waiting for news.
        if (rows.length === this.batch) this.woken[i] = true;
        for (const row of rows) this.onJob(row.payload);
        await client.query({
          name: "floor_complete",
          text: `DELETE FROM ${this.s}.jobs WHERE id = ANY($1::bigint[])`,
          values: [rows.map((row) => row.id)],
        });
      }
    } finally {
      client.release();
    }
  }
}
