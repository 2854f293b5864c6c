import { spawn } from "node:child_process";
import { once } from "node:events";
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { cpus, tmpdir } from "node:os";
import { join } from "node:path";
import { setTimeout as sleep } from "node:timers/promises";
import type { QueueInfo } from "../../core/queue.js";
import type { StatsJson } from "../../api/poolJson.js";
import { PG_URL, sqliteAndPostgres } from "./backends.js";
import { type Figure, figure, format, startProcess, stopProcess } from "./harness.js";
import { dropSchema } from "./queueSystems.js";

const JOBS = 2_000;
const BATCH = 500;
const CONCURRENCY = 16;
const TARGET = 1_000;
/** How often the queue is looked at for the end of the run: small against the run's length. */
const POLL_MS = 20;
const LIMIT_MS = 120_000;
const WORKER = "bench-shell";

interface Backend {
  name: string;
  /** `baton up` options naming the store, and how to remove it afterwards. */
  store(dir: string, run: string): { args: string[]; dispose(): Promise<void> };
}

interface Run {
  jobsPerSecond: number;
  submitMs: number;
}

/** How much of the machine `baton up` offers to jobs, each of which asks for one CPU. */
interface Variant {
  label: string;
  args: string[];
  note: string;
}

const VARIANTS: readonly Variant[] = [
  {
    label: `--cpus ${CONCURRENCY}`,
    args: ["--cpus", String(CONCURRENCY)],
    note: `${CONCURRENCY} jobs at once`,
  },
  {
    label: "default --cpus",
    args: [],
    note: `the machine's ${cpus().length} CPUs: ${Math.min(CONCURRENCY, cpus().length)} jobs at once`,
  },
];

/**
 * Shell jobs end to end, as a user runs them: one `baton up` (server and worker in one
 * process, concurrency 16, fresh store, free port), 2,000 jobs running `true` submitted
 * through the HTTP API in batches of 500; timed from the first submit until the API counts
 * every job succeeded. A shell job asks for one CPU and a worker offers the machine's
 * CPUs by default, so `--concurrency 16` alone runs as many jobs at once as there are CPUs;
 * each repetition runs `baton up --cpus 16` (16 at once, the measure of the target) and
 * `baton up` with its default. A fresh `baton up` and store each time; SQLite, then
 * PostgreSQL (a schema of its own) when reachable.
 */
export async function shellJobs(
  repetitions: number,
): Promise<{ figures: Figure[]; verdict: string }> {
  const { backends, notes } = await sqliteAndPostgres(sqliteBackend, postgresBackend);

  const figures: Figure[] = [];
  const verdicts: string[] = [];
  const floorRuns: number[] = [];
  for (const backend of backends) {
    const runs = VARIANTS.map((): Run[] => []);
    for (let rep = 0; rep < repetitions; rep++) {
      // Alternating, so that both variants see the same load from the rest of the machine.
      for (const [i, variant] of VARIANTS.entries()) {
        const run = await measure(backend, variant, `${rep}_${i}`);
        runs[i]?.push(run);
        progress(
          `${backend.name}, ${variant.label}: ${format(run.jobsPerSecond)} jobs/s ` +
            `(submitted in ${Math.round(run.submitMs)} ms; repetition ${rep + 1})`,
        );
      }
      const floor = await processFloor();
      floorRuns.push(floor);
      progress(`without Baton (xargs -P ${CONCURRENCY}): ${format(floor)} processes/s`);
    }
    const system = `Baton up, ${backend.name}`;
    const rates = VARIANTS.map((variant, i) =>
      figure(
        `${label(JOBS)} shell jobs (\`true\`), submit to all succeeded, ${variant.label}`,
        system,
        "jobs/s",
        (runs[i] ?? []).map((run) => run.jobsPerSecond),
        `concurrency ${CONCURRENCY}, ${variant.note}; HTTP batches of ${BATCH}`,
      ),
    );
    figures.push(
      ...rates,
      figure(
        `submitting them (${JOBS / BATCH} batches of ${BATCH}), ${VARIANTS[0]?.label}`,
        system,
        "ms",
        (runs[0] ?? []).map((run) => run.submitMs),
        "part of the time above",
      ),
    );
    const rate = rates[0]?.median ?? 0;
    verdicts.push(
      `${backend.name}: target ≥ ${format(TARGET)} jobs/s: ${rate >= TARGET ? "met" : "missed"} ` +
        `(median ${format(rate)} jobs/s with ${CONCURRENCY} jobs at once)`,
    );
  }
  if (floorRuns.length > 0) {
    const floor = figure(
      `${label(JOBS)} \`true\` processes, ${CONCURRENCY} at once, without Baton`,
      `xargs -P ${CONCURRENCY}`,
      "processes/s",
      floorRuns,
      "the machine's floor: forks and execs from a small C program, alternated with the runs above",
    );
    figures.push(floor);
    verdicts.push(
      `The machine's floor, the same processes run by \`xargs -P ${CONCURRENCY}\`: ` +
        `${format(floor.median)} processes/s` +
        (floor.median < TARGET ? ` (itself under the target)` : ""),
    );
  }
  return { figures, verdict: [...verdicts, ...notes].join("\n") };
}

/**
 * The same 2,000 `true` processes run by `xargs`, 16 at once, with nothing else: how fast
 * this machine forks, execs and reaps them, the bound under any job runner. Processes a
 * second.
 */
async function processFloor(): Promise<number> {
  const started = performance.now();
  const xargs = spawn("xargs", ["-P", String(CONCURRENCY), "-n", "1", "true"], {
    stdio: ["pipe", "ignore", "inherit"],
  });
  const exited = once(xargs, "exit");
  xargs.stdin.end("x\n".repeat(JOBS));
  const [code] = (await exited) as [number | null];
  if (code !== 0) throw new Error(`xargs -P ${CONCURRENCY} true exited with ${code}`);
  return JOBS / ((performance.now() - started) / 1000);
}

async function measure(backend: Backend, variant: Variant, run: string): Promise<Run> {
  const dir = mkdtempSync(join(tmpdir(), "baton-bench-shell-"));
  const store = backend.store(dir, run);
  const stateDir = join(dir, "worker");
  try {
    const baton = startProcess(
      [
        "up",
        ...store.args,
        "--data-dir",
        dir,
        "--state-dir",
        stateDir,
        "--name",
        WORKER,
        "--port",
        "0",
        "--concurrency",
        String(CONCURRENCY),
        ...variant.args,
      ],
      {},
      "Baton is up",
    );
    try {
      const url = await baton.ready;
      const job = { command: ["true"] };
      const started = performance.now();
      for (let i = 0; i < JOBS; i += BATCH) {
        const jobs = Array.from({ length: Math.min(BATCH, JOBS - i) }, () => job);
        await call(url, "/v1/jobs/batch", { jobs });
      }
      const submitMs = performance.now() - started;
      await untilNoneWaits(url, started);
      const seconds = (performance.now() - started) / 1000;
      const { overall } = (await call(url, "/v1/stats")) as StatsJson;
      if (overall.succeeded !== JOBS || overall.submitted !== JOBS) {
        throw new Error(
          `${backend.name}: expected ${JOBS} jobs succeeded, the API counts ` +
            `${overall.succeeded} of ${overall.submitted} submitted ` +
            `(${overall.failed} failed, ${overall.cancelled} cancelled)`,
        );
      }
      return { jobsPerSecond: JOBS / seconds, submitMs };
    } finally {
      await stopProcess(baton.child);
      await stopSupervisor(stateDir);
    }
  } finally {
    await store.dispose();
    rmSync(dir, { recursive: true, force: true });
  }
}

/** Polls the queues until no job waits or runs (every job has finished one way or another). */
async function untilNoneWaits(url: string, started: number): Promise<void> {
  for (;;) {
    const { queues } = (await call(url, "/v1/queues")) as { queues: QueueInfo[] };
    if (queues.every((queue) => queue.pending === 0 && queue.running === 0)) return;
    if (performance.now() - started > LIMIT_MS) {
      throw new Error(`not finished after ${LIMIT_MS / 1000} s: ${JSON.stringify(queues)}`);
    }
    await sleep(POLL_MS);
  }
}

async function call(url: string, path: string, body?: unknown): Promise<unknown> {
  const response = await fetch(`${url}${path}`, {
    method: body === undefined ? "GET" : "POST",
    headers: body === undefined ? {} : { "content-type": "application/json" },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  if (!response.ok) throw new Error(`${path}: ${response.status} ${await response.text()}`);
  return response.json();
}

/**
 * The job supervisor outlives `baton up` (that is its purpose) and leaves by itself 5 s
 * after its worker; with the worker stopped cleanly it holds nothing, so it is stopped now
 * and waited for, before its directory goes.
 */
async function stopSupervisor(stateDir: string): Promise<void> {
  let log: string;
  try {
    log = readFileSync(join(stateDir, "supervisor.log"), "utf8");
  } catch {
    return;
  }
  const pid = Number(/supervisor (\d+) listening/.exec(log)?.[1] ?? 0);
  const isSupervisor = () => {
    try {
      return readFileSync(`/proc/${pid}/cmdline`, "utf8").includes("supervisorMain");
    } catch {
      return false;
    }
  };
  if (pid <= 0 || !isSupervisor()) return;
  process.kill(pid, "SIGTERM");
  for (let waited = 0; waited < 5_000 && isSupervisor(); waited += 20) await sleep(20);
}

function sqliteBackend(): Backend {
  return {
    name: "SQLite",
    // The default store of `baton up`: sqlite:<data-dir>/baton.db.
    store: () => ({ args: [], dispose: async () => {} }),
  };
}

function postgresBackend(): Backend {
  return {
    name: "PostgreSQL",
    store: (_dir, run) => {
      const schema = `bench_shell_${process.pid}_${run}`;
      return {
        args: ["--store", PG_URL, "--schema", schema],
        dispose: () => dropSchema(PG_URL, schema),
      };
    },
  };
}

const label = (count: number) => count.toLocaleString("en-US");
const progress = (line: string) => process.stderr.write(`  ${line}\n`);
