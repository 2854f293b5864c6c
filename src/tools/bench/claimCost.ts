import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import Database from "better-sqlite3";
import pg from "pg";
import { normalizeJobInput } from "../../core/jobInput.js";
import { PostgresStore } from "../../store/postgres/postgresStore.js";
import { SqliteStore } from "../../store/sqlite/sqliteStore.js";
import type { ClaimRequest, Store } from "../../store/store.js";
import { PG_URL, sqliteAndPostgres } from "./backends.js";
import { type Figure, figure, format } from "./harness.js";

const SMALL = 10_000;
const LARGE = 1_000_000;
const CLAIMS = 2_000;
const WARMUP = 100;
const STRETCH = 100;
const SUCCEEDED = { state: "succeeded", exitCode: 0, signal: null } as const;
const REQUEST: ClaimRequest = {
  workerId: "bench",
  queues: ["default", "batch"],
  kinds: ["shell"],
  freeCpus: 2,
  freeMemoryMb: 4_096,
  leaseTtlMs: 60_000,
};

/** A store holding `pending` ready jobs, and how to dispose of it. */
interface Seeded {
  store: Store;
  dispose(): Promise<void>;
}

interface Backend {
  name: string;
  seed(pending: number): Promise<Seeded>;
}

/**
 * Claim cost against the number of pending jobs: each store is filled with 10,000 and, in a
 * second database, 1,000,000 ready jobs of priorities 1–10 in two queues; one claimer claims
 * and completes 2,000 of them per repetition through the Store API, switching between the
 * two sizes every 100 claims. Completed jobs leave the pending ones, so each store gets as
 * many more as the run will complete (warm-up and repetitions): at least 10,000 and
 * 1,000,000 stay pending throughout. Reports claims per second (claim + complete) and the
 * latency of the claim alone; the 1M ÷ 10k rate should stay near 1.
 */
export async function claimCost(
  repetitions: number,
): Promise<{ figures: Figure[]; summary: string }> {
  const { backends, notes } = await sqliteAndPostgres(sqliteBackend, postgresBackend);

  const figures: Figure[] = [];
  const rows: string[][] = [];
  for (const backend of backends) {
    const system = `Baton, ${backend.name}`;
    const { small, large } = await measureBoth(backend, repetitions);
    const ratio = figure(
      `claim rate, ${label(LARGE)} ÷ ${label(SMALL)} pending`,
      system,
      "×",
      large.rate.map((rate, i) => rate / (small.rate[i] ?? rate)),
      "≈ 1: a claim costs the same however many jobs wait",
    );
    const metrics = [
      ["rate", "claims/s", (run: Run) => run.rate, "claim + complete, one claimer"],
      ["claim p50", "µs", (run: Run) => run.p50, "claim alone"],
      ["claim p99", "µs", (run: Run) => run.p99, "claim alone"],
    ] as const;
    for (const [metric, unit, samples, note] of metrics) {
      const pair = [
        figure(`${metric}, ${label(SMALL)} pending`, system, unit, samples(small), note),
        figure(`${metric}, ${label(LARGE)} pending`, system, unit, samples(large), note),
      ];
      figures.push(...pair);
      const rateRatio = metric === "rate" ? ratio.median.toFixed(2) : "";
      rows.push([backend.name, metric, ...pair.map(cell), rateRatio]);
    }
    figures.push(ratio);
  }
  return { figures, summary: [sideBySide(rows), ...notes].join("\n\n") };
}

interface Run {
  /** Per repetition: claims per second, and claim latency percentiles in µs. */
  rate: number[];
  p50: number[];
  p99: number[];
}

async function measureBoth(
  backend: Backend,
  repetitions: number,
): Promise<{ small: Run; large: Run }> {
  const seeded: Seeded[] = [];
  try {
    // What the run completes in each store, on top of the pending jobs that must remain.
    const consumed = WARMUP + CLAIMS * repetitions;
    const smallDb = await backend.seed(SMALL + consumed);
    seeded.push(smallDb);
    const largeDb = await backend.seed(LARGE + consumed);
    seeded.push(largeDb);
    const small = claimer(smallDb.store, `${backend.name}, ${label(SMALL)}`);
    const large = claimer(largeDb.store, `${backend.name}, ${label(LARGE)}`);
    await small.claimMany(WARMUP);
    await large.claimMany(WARMUP);
    small.endRepetition(false);
    large.endRepetition(false);
    for (let rep = 0; rep < repetitions; rep++) {
      // Short stretches, alternating, so that both sizes see the same load from the rest of
      // the machine; which goes first alternates too.
      for (let i = 0; i < CLAIMS / STRETCH; i++) {
        for (const one of i % 2 === 0 ? [small, large] : [large, small]) {
          await one.claimMany(STRETCH);
        }
      }
      small.endRepetition(true);
      large.endRepetition(true);
    }
    return { small: small.run, large: large.run };
  } finally {
    for (const s of seeded) await s.dispose();
  }
}

/** Claims and completes jobs of one store, keeping each repetition's figures. */
function claimer(store: Store, what: string) {
  const run: Run = { rate: [], p50: [], p99: [] };
  let lastPriority = 0;
  let latencies: number[] = [];
  let seconds = 0;
  const claimOne = async (): Promise<void> => {
    const started = performance.now();
    const claim = await store.claim(REQUEST);
    latencies.push((performance.now() - started) * 1000);
    if (!claim) throw new Error(`${what}: no pending job left to claim`);
    // Successes add no pending jobs, so claims must come in priority order.
    if (claim.job.priority < lastPriority) {
      throw new Error(`${what}: claimed priority ${claim.job.priority} after ${lastPriority}`);
    }
    lastPriority = claim.job.priority;
    const answer = await store.complete(claim.lease, SUCCEEDED);
    if (!answer.applied) throw new Error(`${what}: completing job ${claim.job.id} was refused`);
  };
  return {
    run,
    async claimMany(count: number): Promise<void> {
      const started = performance.now();
      for (let i = 0; i < count; i++) await claimOne();
      seconds += (performance.now() - started) / 1000;
    },
    /** Ends a repetition, recording its figures or (warm-up) discarding them. */
    endRepetition(record: boolean): void {
      if (record) {
        const sorted = latencies.sort((a, b) => a - b);
        const rate = sorted.length / seconds;
        run.rate.push(rate);
        run.p50.push(sorted[Math.floor(sorted.length * 0.5)] ?? 0);
        run.p99.push(sorted[Math.floor(sorted.length * 0.99)] ?? 0);
        progress(`${what}: ${format(rate)} claims/s (repetition ${run.rate.length})`);
      }
      latencies = [];
      seconds = 0;
    },
  };
}

/**
 * The job every seeded row copies: submitted through the store, so the seeded rows hold
 * exactly what `submit` writes, whatever columns later migrations add. Each copy gets its
 * own queue, priority and times, all in the past.
 */
const template = (now: number) => normalizeJobInput({ command: ["true"] }, now);
const varied = (count: number): Record<string, string> => ({
  queue: "CASE WHEN i % 3 = 0 THEN 'batch' ELSE 'default' END",
  priority: "1 + (i * 7) % 10",
  run_at: `t.run_at - ${count} + i`,
  created_at: `t.created_at - ${count} + i`,
});
const copyList = (columns: readonly string[], count: number) => {
  const values = varied(count);
  return columns.map((column) => values[column] ?? `t.${column}`).join(", ");
};

function sqliteBackend(): Backend {
  return {
    name: "SQLite",
    async seed(pending) {
      const dir = mkdtempSync(join(tmpdir(), "baton-bench-claims-"));
      const path = join(dir, "baton.db");
      const store = new SqliteStore({ path });
      const dispose = async () => {
        await store.close();
        rmSync(dir, { recursive: true, force: true });
      };
      try {
        const started = performance.now();
        const { job } = await store.submit(template(Date.now()));
        const db = new Database(path);
        try {
          const columns = db
            .prepare("SELECT name FROM pragma_table_info('jobs') WHERE name <> 'id'")
            .pluck()
            .all() as string[];
          const count = pending - 1;
          db.prepare(
            `INSERT INTO jobs (${columns.join(", ")})
             WITH RECURSIVE s(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM s WHERE i < ${count})
             SELECT ${copyList(columns, count)} FROM s, jobs AS t WHERE t.id = ?`,
          ).run(Number(job.id));
          // Copies the seeded pages into the database file and empties the WAL, as a store
          // long in use would have done, so that no claim pays for the seeding.
          db.pragma("wal_checkpoint(TRUNCATE)");
        } finally {
          db.close();
        }
        progress(
          `SQLite: seeded ${pending.toLocaleString("en-US")} pending jobs in ${elapsed(started)}`,
        );
        return { store, dispose };
      } catch (error) {
        await dispose();
        throw error;
      }
    },
  };
}

function postgresBackend(): Backend {
  return {
    name: "PostgreSQL",
    async seed(pending) {
      const schema = `bench_claims_${process.pid}_${pending}`;
      const client = new pg.Client({ connectionString: PG_URL });
      await client.connect();
      const drop = () => client.query(`DROP SCHEMA IF EXISTS ${schema} CASCADE`);
      let store: PostgresStore | null = null;
      const dispose = async () => {
        await store?.close();
        await drop();
        await client.end();
      };
      try {
        await drop();
        store = await PostgresStore.open({ url: PG_URL, schema });
        const started = performance.now();
        const { job } = await store.submit(template(Date.now()));
        const { rows } = await client.query<{ name: string }>(
          `SELECT column_name AS name FROM information_schema.columns
           WHERE table_schema = $1 AND table_name = 'jobs' AND column_name <> 'id'
           ORDER BY ordinal_position`,
          [schema],
        );
        const columns = rows.map((row) => row.name);
        const count = pending - 1;
        await client.query(
          `INSERT INTO ${schema}.jobs (${columns.join(", ")})
           SELECT ${copyList(columns, count)}
           FROM generate_series(1, ${count}) AS s(i), ${schema}.jobs AS t WHERE t.id = $1`,
          [Number(job.id)],
        );
        // Where autovacuum would soon bring a table after a bulk insert (statistics known,
        // visibility map set), with the seeding's writes flushed: measuring before would
        // measure when autovacuum and the checkpointer happen to run.
        await client.query(`VACUUM ANALYZE ${schema}.jobs`);
        await client.query("CHECKPOINT").catch((error: Error) => {
          progress(`PostgreSQL: no CHECKPOINT after seeding (${error.message}); expect noise`);
        });
        progress(
          `PostgreSQL: seeded ${pending.toLocaleString("en-US")} pending jobs in ${elapsed(started)}`,
        );
        return { store, dispose };
      } catch (error) {
        await dispose();
        throw error;
      }
    },
  };
}

const label = (count: number) =>
  count >= 1_000_000 ? `${count / 1_000_000}M` : `${count / 1_000}k`;
const cell = (f: Figure) => `${format(f.median)} ${f.unit} (${format(f.min)}–${format(f.max)})`;
const elapsed = (started: number) => `${((performance.now() - started) / 1000).toFixed(1)} s`;
const progress = (line: string) => process.stderr.write(`  ${line}\n`);

/** Each metric at both sizes in one row, medians with their min–max (Markdown). */
function sideBySide(rows: readonly string[][]): string {
  const headers = [
    "store",
    "metric",
    `${label(SMALL)} pending`,
    `${label(LARGE)} pending`,
    `rate ${label(LARGE)} ÷ ${label(SMALL)}`,
  ];
  const all = [headers, ...rows];
  const widths = headers.map((_, i) => Math.max(...all.map((cells) => (cells[i] ?? "").length)));
  const line = (cells: readonly string[]) =>
    `| ${widths.map((w, i) => (cells[i] ?? "").padEnd(w)).join(" | ")} |`;
  return [line(headers), line(widths.map((w) => "-".repeat(w))), ...rows.map(line)].join("\n");
}
