import pg from "pg";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { normalizeJobInput } from "../../src/core/jobInput.js";
import { PostgresStore } from "../../src/store/postgres/postgresStore.js";
import type { Claim } from "../../src/store/store.js";
import { eventually } from "../helpers/processes.js";
import { dropSchema, PG_URL, postgresAvailable, testSchema } from "../helpers/stores.js";

/**
 * Writers of many job rows lock them in id order, so that two of them sharing rows (a
 * heartbeat and the outcomes of the same jobs) can never wait on each other in a cycle:
 * that deadlocked, and PostgreSQL broke it after a second by failing one of them.
 */
describe.runIf(await postgresAvailable())("PostgreSQL writers of many jobs", () => {
  let schema: string;
  let store: PostgresStore;
  let holder: pg.Client;
  let prober: pg.Client;
  let claims: Claim[];

  beforeEach(async () => {
    schema = testSchema();
    store = await PostgresStore.open({ url: PG_URL, schema });
    holder = new pg.Client(PG_URL);
    prober = new pg.Client(PG_URL);
    await Promise.all([holder.connect(), prober.connect()]);
    const now = Date.now();
    // Claim order (priority) is the reverse of id order.
    await store.submitBatch(
      Array.from({ length: 40 }, (_, i) =>
        normalizeJobInput({ command: ["true"], priority: i }, now),
      ),
    );
    claims = await store.claimBatch(
      {
        workerId: "w1",
        queues: null,
        kinds: ["shell"],
        freeCpus: 1_000,
        freeMemoryMb: null,
        leaseTtlMs: 60_000,
      },
      40,
    );
    expect(claims).toHaveLength(40);
  });

  afterEach(async () => {
    await Promise.all([holder.end(), prober.end()]);
    await store.close();
    await dropSchema(schema);
  });

  /**
   * With the lowest id locked elsewhere, the write must be waiting on that row with no other
   * row of its batch locked yet; once the row is let go, it goes through.
   */
  async function locksInIdOrder<T>(write: () => Promise<T>): Promise<T> {
    const ids = claims.map((claim) => Number(claim.lease.jobId)).sort((a, b) => a - b);
    const [lowest, ...rest] = ids;
    await holder.query("BEGIN");
    await holder.query(`SELECT id FROM ${schema}.jobs WHERE id = $1 FOR UPDATE`, [lowest]);
    const written = write();
    await eventually(async () => {
      const { rows } = await prober.query<{ n: number }>(
        `SELECT count(*)::int AS n FROM pg_stat_activity
         WHERE wait_event_type = 'Lock' AND query LIKE '%${schema}.jobs%'`,
      );
      return rows[0]?.n === 1 ? true : undefined;
    });
    await prober.query("BEGIN");
    const free = await prober.query(
      `SELECT id FROM ${schema}.jobs WHERE id = ANY($1::bigint[]) FOR UPDATE NOWAIT`,
      [rest],
    );
    expect(free.rowCount).toBe(rest.length);
    await prober.query("ROLLBACK");
    await holder.query("ROLLBACK");
    return written;
  }

  it("renews leases in id order", async () => {
    const answers = await locksInIdOrder(() =>
      store.heartbeatBatch(
        claims.map((claim) => claim.lease),
        60_000,
      ),
    );
    expect(answers.every((answer) => answer.held)).toBe(true);
  });

  it("records a batch of successes in id order", async () => {
    const answers = await locksInIdOrder(() =>
      store.completeBatch(
        claims.map((claim) => ({
          lease: claim.lease,
          outcome: { state: "succeeded", exitCode: 0, signal: null },
        })),
      ),
    );
    expect(answers.every((answer) => answer.applied)).toBe(true);
  });
});
