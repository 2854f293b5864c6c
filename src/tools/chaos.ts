/**
 * Chaos harness: runs N jobs on W worker processes while a killer `kill -9`s a random worker
 * every 1–3 s and restarts it under the same name, then checks that no job was lost, none
 * ran twice at once, none is stuck, and none ran again after succeeding.
 *
 *   npm run chaos -- [--jobs 2000] [--workers 4] [--duration 60s] [--lease-ttl 3s] [--keep]
 *
 * Each job appends its own start and end (job, attempt, epoch ms) to a record file, so the
 * check does not trust Baton's bookkeeping for what actually ran. Exits 1 on any violation.
 */
import { type ChildProcess, spawn } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { parseArgs } from "node:util";
import type { JobJson } from "../api/jobJson.js";
import { parseDuration } from "../core/duration.js";

const { values } = parseArgs({
  options: {
    jobs: { type: "string", default: "2000" },
    workers: { type: "string", default: "4" },
    duration: { type: "string", default: "60s" },
    "lease-ttl": { type: "string", default: "3s" },
    keep: { type: "boolean", default: false },
  },
});
const JOBS = Number(values.jobs);
const WORKERS = Number(values.workers);
const DURATION_MS = parseDuration(values.duration) ?? 60_000;
const TTL_MS = parseDuration(values["lease-ttl"]) ?? 3_000;
const CLI = fileURLToPath(new URL("../cli/main.js", import.meta.url));
const dir = mkdtempSync(join(tmpdir(), "baton-chaos-"));
const store = `sqlite:${join(dir, "baton.db")}`;
const record = join(dir, "runs.log");
const children = new Set<ChildProcess>();

// The script's own output goes nowhere: once its worker is dead, a write to the worker's pipe
// would kill it with SIGPIPE before its TERM trap could record the end.
const JOB_SCRIPT = `
exec >/dev/null 2>&1
now() { date +%s%3N; }
trap 'echo "end $BATON_JOB_ID $BATON_ATTEMPT $(now) term" >> "$RECORD"; exit 143' TERM
echo "start $BATON_JOB_ID $BATON_ATTEMPT $(now)" >> "$RECORD"
sleep "$WORK" & wait $!
echo "end $BATON_JOB_ID $BATON_ATTEMPT $(now) ok" >> "$RECORD"
`;

function start(args: string[]): { child: ChildProcess; ready: Promise<string> } {
  const child = spawn(process.execPath, [CLI, ...args], {
    stdio: ["ignore", "ignore", "pipe"],
    env: { ...process.env, BATON_LOG_FORMAT: "json", BATON_LOG_LEVEL: "info" },
  });
  children.add(child);
  child.once("exit", () => children.delete(child));
  let log = "";
  const ready = new Promise<string>((resolve, reject) => {
    child.stderr?.on("data", (chunk: Buffer) => {
      if (log.length < 100_000) log += chunk.toString();
      const url = /"url":"(http:\/\/[^"]+)"/.exec(log);
      if (url?.[1]) resolve(url[1]);
      else if (log.includes("worker running")) resolve("");
    });
    child.once("exit", (code) => reject(new Error(`${args[0]} exited (${code}):\n${log}`)));
  });
  // Keep draining stderr so that a chatty child never blocks.
  child.stderr?.resume();
  return { child, ready };
}

const workers = new Map<string, ChildProcess>();
async function startWorker(name: string): Promise<void> {
  const { child, ready } = start([
    "worker",
    "--store",
    store,
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
 * would still be running when its retry starts, were the watchdog not to stop it.
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
  const server = start(["server", "--store", store, "--port", "0", "--reap-interval", "100ms"]);
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
  while (Date.now() < chaosEnd) {
    await sleep(1_000 + Math.random() * 2_000);
    const name = names[Math.floor(Math.random() * names.length)] as string;
    const victim = workers.get(name);
    if (!victim) continue;
    const exited = new Promise((resolve) => victim.once("exit", resolve));
    victim.kill("SIGKILL");
    kills.push({ name, at: Date.now() });
    await exited;
    await startWorker(name);
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
        if (a.ok && b.start > 0) duplicates++;
      }
    }
  }

  // Recovery: from a kill to the next attempt of each job the killed worker held.
  const recoveries: number[] = [];
  for (const job of jobs) {
    const attempts = job.attempts ?? [];
    for (let i = 0; i + 1 < attempts.length; i++) {
      const lostAttempt = attempts[i];
      const next = attempts[i + 1];
      if (lostAttempt?.failure?.reason !== "worker_lost" || !next) continue;
      const started = Date.parse(lostAttempt.startedAt);
      const kill = kills.find((k) => k.name === lostAttempt.workerId && k.at >= started);
      if (kill) recoveries.push(Date.parse(next.startedAt) - kill.at);
    }
  }
  recoveries.sort((a, b) => a - b);

  const violations = lost + overlapping + stuck + duplicates + unfinished;
  process.stdout.write(
    `jobs ${JOBS}, succeeded ${succeeded}, failed ${failed}, lost ${lost}, ` +
      `overlapping executions ${overlapping}, stuck ${stuck}, duplicates after success ${duplicates}` +
      (unfinished > 0 ? `, never finished ${unfinished}` : "") +
      "\n" +
      `workers ${WORKERS}, kills ${kills.length} over ${Math.round((stoppedAt - (chaosEnd - DURATION_MS)) / 1000)}s, ` +
      `lease TTL ${TTL_MS}ms; recovery from kill to the job running again: ` +
      `p50 ${percentile(recoveries, 0.5)}ms, max ${recoveries.at(-1) ?? 0}ms (${recoveries.length} jobs)\n`,
  );
  return violations === 0 ? 0 : 1;
}

let code = 1;
try {
  code = await main();
} catch (error) {
  process.stderr.write(`chaos: ${(error as Error).stack ?? String(error)}\n`);
} finally {
  for (const child of children) child.kill("SIGKILL");
  if (!values.keep) rmSync(dir, { recursive: true, force: true });
  else process.stdout.write(`kept ${dir}\n`);
}
process.exit(code);
