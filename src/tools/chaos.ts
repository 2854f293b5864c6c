/**
 * Chaos harness: runs N jobs on W worker processes while a killer `kill -9`s a random worker
 * every 1–3 s and restarts it under the same name, then checks that no job was lost, none
 * ran twice at once, none is stuck, and none ran again after succeeding. (One exception,
 * counted apart: a restart slower than the lease, as on a loaded machine, lets the reaper
 * give the worker's jobs to others, and a job that had ended well meanwhile runs again: at
 * least once, as designed.)
 *
 *   npm run chaos -- [--jobs 2000] [--workers 4] [--duration 60s] [--lease-ttl 3s] [--keep]
 *                    [--store postgres://…] [--restart-db "pg_ctlcluster 15 main restart"]
 *
 * On PostgreSQL it works in a fresh schema, dropped afterwards; `--restart-db` runs the given
 * command once, halfway through the chaos, to restart the database under the running pool.
 *
 * Each job appends its own start and end (job, attempt, epoch ms) to a record file, so the
 * check does not trust Baton's bookkeeping for what actually ran. Exits 1 on any violation.
 */
import { type ChildProcess, execSync } from "node:child_process";
import pg from "pg";
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { parseArgs } from "node:util";
import type { JobJson } from "../api/jobJson.js";
import { parseDuration } from "../core/duration.js";
import { startProcess } from "./bench/harness.js";

const { values } = parseArgs({
  options: {
    jobs: { type: "string", default: "2000" },
    workers: { type: "string", default: "4" },
    duration: { type: "string", default: "60s" },
    "lease-ttl": { type: "string", default: "3s" },
    keep: { type: "boolean", default: false },
    store: { type: "string" },
    "restart-db": { type: "string" },
  },
});
const JOBS = Number(values.jobs);
const WORKERS = Number(values.workers);
const DURATION_MS = parseDuration(values.duration) ?? 60_000;
const TTL_MS = parseDuration(values["lease-ttl"]) ?? 3_000;
const dir = mkdtempSync(join(tmpdir(), "baton-chaos-"));
const store = values.store ?? `sqlite:${join(dir, "baton.db")}`;
const onPostgres = /^postgres(ql)?:\/\//.test(store);
const schema = `chaos_${process.pid}`;
// Flags that name the store for every Baton process of the run.
const storeArgs = onPostgres ? ["--store", store, "--schema", schema] : ["--store", store];
const record = join(dir, "runs.log");
const children = new Set<ChildProcess>();

// The job writes output too: it must flow on, through a worker's death and its adoption.
const JOB_SCRIPT = `
now() { date +%s%3N; }
trap 'echo "end $BATON_JOB_ID $BATON_ATTEMPT $(now) term" >> "$RECORD"; exit 143' TERM
echo "start $BATON_JOB_ID $BATON_ATTEMPT $(now)" >> "$RECORD"
echo "working for $WORK s"
sleep "$WORK" & wait $!
echo "done" >&2
echo "end $BATON_JOB_ID $BATON_ATTEMPT $(now) ok" >> "$RECORD"
`;

function start(args: string[]): { child: ChildProcess; ready: Promise<string> } {
  const started = startProcess(args);
  children.add(started.child);
  started.child.once("exit", () => children.delete(started.child));
  return started;
}

const workers = new Map<string, ChildProcess>();
async function startWorker(name: string): Promise<void> {
  const { child, ready } = start([
    "worker",
    ...storeArgs,
    "--name",
    name,
    "--state-dir",
    join(dir, name),
    "--concurrency",
    "4",
    "--cpus",
    "4",
    "--lease-ttl",
    `${TTL_MS}ms`,
    "--heartbeat-interval",
    `${Math.round(TTL_MS / 3)}ms`,
    "--kill-grace",
    `${Math.round(TTL_MS / 3)}ms`,
    "--flush-interval",
    "200ms",
  ]);
  workers.set(name, child);
  await ready;
}

/** Kill times of each worker, to measure how long its restart took to adopt its jobs. */
const recoveries: number[] = [];

async function api<T>(url: string, path: string, body?: unknown): Promise<T> {
  const response = await fetch(`${url}${path}`, {
    method: body === undefined ? "GET" : "POST",
    headers: body === undefined ? {} : { "content-type": "application/json" },
    body: body === undefined ? null : JSON.stringify(body),
  });
  if (!response.ok) throw new Error(`${path}: ${response.status} ${await response.text()}`);
  return (await response.json()) as T;
}

/**
 * Mostly short jobs; one in ten outlives several leases, so that an orphan of a killed worker
 * would still be running when its retry starts, were the supervisor not to stop it.
 */
const LONG_SHARE = 0.1;
const LONG_WORK_S = (3 * TTL_MS) / 1000;
function workSeconds(meanS: number): number {
  return Math.random() < LONG_SHARE ? LONG_WORK_S : meanS * (0.5 + Math.random());
}

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));
const percentile = (sorted: number[], p: number) =>
  sorted.length === 0
    ? 0
    : (sorted[Math.min(sorted.length - 1, Math.floor(p * sorted.length))] ?? 0);

async function main(): Promise<number> {
  const server = start(["server", ...storeArgs, "--port", "0", "--reap-interval", "100ms"]);
  const url = await server.ready;
  const names = Array.from({ length: WORKERS }, (_, i) => `chaos-w${i + 1}`);
  await Promise.all(names.map(startWorker));

  // Enough work that the pool stays busy for about the chaos period.
  const slots = WORKERS * 4;
  // Short jobs fill what the long tenth leaves of (duration × slots), so the pool stays busy for
  // about the chaos period and then drains.
  const budgetS = ((DURATION_MS / 1000) * slots) / JOBS - LONG_SHARE * LONG_WORK_S;
  const meanWorkS = Math.min(2, Math.max(0.05, budgetS / (1 - LONG_SHARE)));
  const ids: string[] = [];
  for (let i = 0; i < JOBS; i += 50) {
    const batch = Array.from({ length: Math.min(50, JOBS - i) }, () =>
      api<JobJson>(url, "/v1/jobs", {
        command: ["sh", "-c", JOB_SCRIPT],
        env: { RECORD: record, WORK: workSeconds(meanWorkS).toFixed(3) },
        maxAttempts: 20,
        backoff: { baseMs: 100, maxMs: 1_000 },
      }),
    );
    for (const job of await Promise.all(batch)) ids.push(job.id);
  }

  const kills: Array<{ name: string; at: number }> = [];
  const chaosEnd = Date.now() + DURATION_MS;
  let restartAt = values["restart-db"] ? Date.now() + DURATION_MS / 2 : Number.POSITIVE_INFINITY;
  while (Date.now() < chaosEnd) {
    if (Date.now() >= restartAt) {
      restartAt = Number.POSITIVE_INFINITY;
      process.stderr.write(`restarting the database: ${values["restart-db"] ?? ""}\n`);
      execSync(values["restart-db"] ?? "", { stdio: "inherit" });
    }
    await sleep(1_000 + Math.random() * 2_000);
    const name = names[Math.floor(Math.random() * names.length)] as string;
    const victim = workers.get(name);
    if (!victim) continue;
    const exited = new Promise((resolve) => victim.once("exit", resolve));
    victim.kill("SIGKILL");
    kills.push({ name, at: Date.now() });
    await exited;
    const killedAt = Date.now();
    // Ready means adopted: the restarted worker logs "worker running" only after adoption.
    await startWorker(name);
    recoveries.push(Date.now() - killedAt);
  }
  const stoppedAt = Date.now();

  // Let the pool finish: every job must end, or be stuck.
  const settleBy = Date.now() + Math.max(120_000, DURATION_MS);
  let jobs: JobJson[] = [];
  for (;;) {
    jobs = await Promise.all(ids.map((id) => api<JobJson>(url, `/v1/jobs/${id}`)));
    const open = jobs.filter((job) => job.state === "pending" || job.state === "running");
    if (open.length === 0 || Date.now() > settleBy) break;
    await sleep(500);
  }

  interface Run {
    start: number;
    end: number;
    ok: boolean;
  }
  const runs = new Map<string, Map<number, Run>>();
  for (const line of readFileSync(record, "utf8").split("\n")) {
    const [kind, job, attempt, at, how] = line.split(" ");
    if (!job || !attempt || !at) continue;
    const attempts = runs.get(job) ?? new Map<number, Run>();
    runs.set(job, attempts);
    const entry = attempts.get(Number(attempt)) ?? {
      start: 0,
      end: Number.POSITIVE_INFINITY,
      ok: false,
    };
    if (kind === "start") entry.start = Number(at);
    else {
      entry.end = Number(at);
      entry.ok = how === "ok";
    }
    attempts.set(Number(attempt), entry);
  }

  const terminal = new Set(["succeeded", "failed", "cancelled"]);
  const succeeded = jobs.filter((job) => job.state === "succeeded").length;
  const failed = jobs.filter((job) => job.state === "failed").length;
  const lost = jobs.filter(
    (job) => !terminal.has(job.state) && job.state !== "pending" && job.state !== "running",
  ).length;
  // Stuck: still running more than a lease TTL after even the longest job should have ended.
  const stuck = jobs.filter(
    (job) =>
      job.state === "running" &&
      Date.parse(job.startedAt ?? "") < Date.now() - LONG_WORK_S * 1000 * 1.5 - TTL_MS,
  ).length;
  const unfinished = jobs.filter((job) => job.state === "pending").length;
  let overlapping = 0;
  let duplicates = 0;
  // A success the store never heard of, because its worker stayed away longer than the lease
  // and the reaper gave the job to another: at least once, by design, not a duplicate.
  let rerunsAfterLeaseRanOut = 0;
  const byId = new Map(jobs.map((job) => [job.id, job]));
  const lostWorker = (jobId: string, attempt: number) =>
    byId.get(jobId)?.attempts?.find((a) => a.attempt === attempt)?.failure?.reason ===
    "worker_lost";
  for (const [jobId, attempts] of runs) {
    const list = [...attempts.entries()].sort((a, b) => a[0] - b[0]);
    for (let i = 0; i < list.length; i++) {
      for (let j = i + 1; j < list.length; j++) {
        const [, a] = list[i] as [number, Run];
        const [, b] = list[j] as [number, Run];
        if (a.start < b.end && b.start < a.end) {
          overlapping++;
          process.stderr.write(
            `overlap: job ${jobId} attempts ${list[i]?.[0]} ${JSON.stringify(a)} and ${list[j]?.[0]} ${JSON.stringify(b)}\n`,
          );
        }
        if (a.ok && b.start > 0) {
          const attempt = list[i]?.[0] ?? 0;
          const expected = lostWorker(jobId, attempt);
          if (expected) rerunsAfterLeaseRanOut++;
          else duplicates++;
          process.stderr.write(
            `job ${jobId}: attempt ${attempt} ended ok, attempt ${list[j]?.[0]} started after it` +
              (expected ? " (the store had recorded its worker lost: its lease ran out)\n" : "\n"),
          );
        }
      }
    }
  }

  recoveries.sort((a, b) => a - b);
  const retried = jobs.filter((job) => (job.attempts?.length ?? 0) > 1);
  for (const job of retried) {
    const why = (job.attempts ?? []).map((a) => `${a.workerId}: ${a.failure?.message ?? "ok"}`);
    process.stderr.write(`job ${job.id} needed ${why.length} attempts: ${why.join("; ")}\n`);
  }

  const violations = lost + overlapping + stuck + duplicates + unfinished;
  process.stdout.write(
    `jobs ${JOBS}, succeeded ${succeeded}, failed ${failed}, lost ${lost}, ` +
      `overlapping executions ${overlapping}, stuck ${stuck}, duplicates after success ${duplicates}, ` +
      `re-runs after a worker stayed away past its lease ${rerunsAfterLeaseRanOut}` +
      (unfinished > 0 ? `, never finished ${unfinished}` : "") +
      "\n" +
      `workers ${WORKERS}, kills ${kills.length} over ${Math.round((stoppedAt - (chaosEnd - DURATION_MS)) / 1000)}s, ` +
      `lease TTL ${TTL_MS}ms; recovery from kill to its jobs adopted by the restarted worker: ` +
      `p50 ${percentile(recoveries, 0.5)}ms, max ${recoveries.at(-1) ?? 0}ms; ` +
      `jobs that needed another attempt ${retried.length}\n`,
  );
  return violations === 0 ? 0 : 1;
}

async function dropChaosSchema(): Promise<void> {
  const client = new pg.Client({ connectionString: store });
  try {
    await client.connect();
    await client.query(`DROP SCHEMA IF EXISTS ${schema} CASCADE`);
  } catch (error) {
    process.stderr.write(`chaos: could not drop schema ${schema}: ${(error as Error).message}\n`);
  } finally {
    await client.end().catch(() => {});
  }
}

let code = 1;
try {
  code = await main();
} catch (error) {
  process.stderr.write(`chaos: ${(error as Error).stack ?? String(error)}\n`);
} finally {
  for (const child of children) child.kill("SIGKILL");
  // Supervisors may still be writing their notes there while their last jobs wind down.
  if (!values.keep) {
    try {
      rmSync(dir, { recursive: true, force: true, maxRetries: 10, retryDelay: 200 });
    } catch (error) {
      process.stderr.write(`chaos: could not remove ${dir}: ${(error as Error).message}\n`);
    }
  }
  if (onPostgres && !values.keep) await dropChaosSchema();
  if (values.keep) {
    process.stdout.write(`kept ${dir}${onPostgres ? ` and schema ${schema}` : ""}\n`);
  }
}
process.exit(code);
