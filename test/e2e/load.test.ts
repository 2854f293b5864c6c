import { spawn } from "node:child_process";
import { join, resolve } from "node:path";
import pg from "pg";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { api } from "../helpers/api.js";
import {
  type Daemon,
  eventually,
  startServerDaemon,
  startWorkerDaemon,
  tempDir,
} from "../helpers/processes.js";
import { dropSchema, PG_URL, postgresAvailable, testSchema } from "../helpers/stores.js";

// The heavy end-to-end runs live in this one file so that they run one after the other: run
// side by side on a 2-core machine, they would starve each other's restarts past the lease.
const CHAOS = resolve(import.meta.dirname, "../../dist/tools/chaos.js");
const onPostgres = await postgresAvailable();
// Restarting the database disturbs every other test using it: only on request, e.g.
// BATON_TEST_PG_RESTART="pg_ctlcluster 15 main restart".
const restartDb = process.env.BATON_TEST_PG_RESTART;

async function chaos(args: string[]): Promise<{ output: string; code: number | null }> {
  return new Promise((done, fail) => {
    const child = spawn(process.execPath, [CHAOS, ...args], {
      stdio: ["ignore", "pipe", "inherit"],
    });
    let text = "";
    child.stdout.on("data", (chunk: Buffer) => {
      text += chunk.toString();
    });
    child.on("error", fail);
    child.on("close", (exitCode) => done({ output: text, code: exitCode }));
  });
}

function expectNoViolation(output: string, code: number | null, jobs: number): void {
  process.stdout.write(output);
  const count = (label: string) => Number(new RegExp(`${label} (\\d+)`).exec(output)?.[1] ?? NaN);
  expect(count("jobs")).toBe(jobs);
  expect(count("lost")).toBe(0);
  expect(count("overlapping executions")).toBe(0);
  expect(count("stuck")).toBe(0);
  expect(count("duplicates after success")).toBe(0);
  expect(count("succeeded")).toBe(jobs);
  expect(count("kills")).toBeGreaterThan(3);
  expect(code).toBe(0);
}

/**
 * The short chaos run (kill -9 of a random worker every 1–3 s, restarted under the same name):
 * no job lost, no two attempts of a job running at once, none stuck, none run again after it
 * succeeded (the restarted worker adopts its jobs), unless the store had recorded its worker
 * lost: a restart slower than the lease, on a loaded machine, ends in a re-run by design.
 */
describe("chaos", () => {
  it("loses no job and never runs one twice while workers are killed and restarted", async () => {
    const args = ["--jobs", "300", "--workers", "3", "--duration", "30s", "--lease-ttl", "3s"];
    const { output, code } = await chaos(args);
    expectNoViolation(output, code, 300);
  }, 120_000);

  it.skipIf(!onPostgres)(
    "holds the same on PostgreSQL",
    async () => {
      const args = ["--jobs", "150", "--workers", "3", "--duration", "15s", "--lease-ttl", "3s"];
      const { output, code } = await chaos([...args, "--store", PG_URL]);
      expectNoViolation(output, code, 150);
    },
    120_000,
  );

  it.skipIf(!onPostgres || !restartDb)(
    "holds while PostgreSQL restarts mid-run",
    async () => {
      const args = ["--jobs", "150", "--workers", "3", "--duration", "20s", "--lease-ttl", "3s"];
      const { output, code } = await chaos([
        ...args,
        "--store",
        PG_URL,
        "--restart-db",
        restartDb ?? "",
      ]);
      expectNoViolation(output, code, 150);
    },
    120_000,
  );
});

const JOBS = 5_000;
const WORKERS = 4;

describe.skipIf(!onPostgres)("many servers and workers on one PostgreSQL", () => {
  const dir = tempDir();
  const schema = testSchema();
  const daemons: Daemon[] = [];
  const urls: string[] = [];

  beforeAll(async () => {
    const args = ["--schema", schema];
    const servers = await Promise.all([0, 1].map(() => startServerDaemon(PG_URL, args)));
    for (const server of servers) {
      daemons.push(server.daemon);
      urls.push(server.url);
    }
    const workers = await Promise.all(
      Array.from({ length: WORKERS }, (_, i) =>
        startWorkerDaemon(PG_URL, `pg-w${i + 1}`, join(dir.path, `w${i + 1}`), [
          ...args,
          "--concurrency",
          "8",
        ]),
      ),
    );
    daemons.push(...workers);
  });
  afterAll(async () => {
    await Promise.all(daemons.map((d) => d.stop("SIGKILL")));
    await dropSchema(schema);
    dir.remove();
  });

  it(`runs ${JOBS} jobs submitted through two servers, each exactly once`, async () => {
    const started = performance.now();
    const ids: string[] = [];
    // 32 submitters at a time, alternating between the servers.
    for (let i = 0; i < JOBS; i += 32) {
      const batch = Array.from({ length: Math.min(32, JOBS - i) }, (_, j) =>
        api(urls[(i + j) % 2] as string).submit({ command: ["true"] }),
      );
      ids.push(...(await Promise.all(batch)));
    }
    const submitted = performance.now();
    const db = new pg.Client({ connectionString: PG_URL });
    await db.connect();
    try {
      const counts = await eventually(
        async () => {
          const { rows } = await db.query<{ state: string; n: string }>(
            `SELECT state, count(*) AS n FROM ${schema}.jobs GROUP BY state`,
          );
          const by = Object.fromEntries(rows.map((r) => [r.state, Number(r.n)]));
          return (by.succeeded ?? 0) + (by.failed ?? 0) === JOBS ? by : undefined;
        },
        120_000,
        "every job to finish",
      );
      const finished = performance.now();
      expect(counts).toEqual({ succeeded: JOBS });
      // Exactly once: one attempt per job, no attempt 2 anywhere.
      const attempts = await db.query<{ n: string; max: number; workers: string }>(
        `SELECT count(*) AS n, max(attempt) AS max, count(DISTINCT worker_id) AS workers
         FROM ${schema}.attempts`,
      );
      expect(Number(attempts.rows[0]?.n)).toBe(JOBS);
      expect(attempts.rows[0]?.max).toBe(1);
      expect(Number(attempts.rows[0]?.workers)).toBe(WORKERS);
      expect(new Set(ids).size).toBe(JOBS);
      const seconds = (finished - started) / 1000;
      process.stdout.write(
        `PostgreSQL, 2 servers and ${WORKERS} workers: ${JOBS} shell jobs in ${seconds.toFixed(1)} s ` +
          `(${Math.round(JOBS / seconds)} jobs/s; submitting took ${((submitted - started) / 1000).toFixed(1)} s)\n`,
      );
    } finally {
      await db.end();
    }
  }, 180_000);

  it("cancels a running job held by a worker in another process in under 250 ms", async () => {
    const [first, second] = urls as [string, string];
    const id = await api(first).submit({ command: ["sh", "-c", "echo started; exec sleep 60"] });
    await api(first).firstLine(id);
    const asked = performance.now();
    const response = await fetch(`${second}/v1/jobs/${id}/cancel`, { method: "POST" });
    expect(response.status).toBe(200);
    const job = await eventually(
      async () => {
        const current = await api(second).job(id);
        return current.state === "cancelled" ? current : undefined;
      },
      5_000,
      "the cancel to take effect",
    );
    const tookMs = performance.now() - asked;
    process.stdout.write(`cancel across processes took effect in ${Math.round(tookMs)} ms\n`);
    expect(job.signal).toBe("SIGTERM");
    expect(tookMs).toBeLessThan(250);
  });
});
