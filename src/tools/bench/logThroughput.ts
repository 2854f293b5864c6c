import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { JobJson } from "../../api/jobJson.js";
import { type Figure, figure, rssMiB, startProcess, stopProcess } from "./harness.js";

/**
 * Log throughput on SQLite: a job prints numbered lines as fast as `seq` can; lines per
 * second from its stdout into the store (submit to recorded outcome: a job's outcome is
 * recorded only after all its output is stored), then back out through the HTTP API, page
 * by page. The worker's resident memory is sampled throughout, for a small and a large job:
 * it must not grow with the output.
 */
export async function logThroughput(repetitions: number): Promise<Figure[]> {
  const dir = mkdtempSync(join(tmpdir(), "baton-bench-logs-"));
  const store = `sqlite:${join(dir, "baton.db")}`;
  const server = startProcess(["server", "--store", store, "--port", "0"]);
  const worker = startProcess([
    "worker",
    "--store",
    store,
    "--name",
    "bench",
    "--state-dir",
    join(dir, "w"),
  ]);
  try {
    const url = await server.ready;
    await worker.ready;
    const into: number[] = [];
    const out: number[] = [];
    const memory = new Map<number, number[]>();
    const sizes = [1_000_000, 3_000_000];
    for (let run = 0; run < repetitions; run++) {
      for (const lines of sizes) {
        const { seconds, maxRss } = await runJob(url, lines, worker.child.pid ?? 0);
        if (lines === sizes[0]) into.push(lines / seconds);
        memory.set(lines, [...(memory.get(lines) ?? []), maxRss]);
        if (lines === sizes[0]) out.push(lines / (await readBack(url, lines)));
      }
    }
    return [
      figure(
        "log lines into the store (1M-line job)",
        "Baton, SQLite",
        "lines/s",
        into,
        "target ≥ 200,000",
      ),
      figure("log lines out through the API", "Baton, SQLite", "lines/s", out),
      ...sizes.map((lines) =>
        figure(
          `worker memory, ${lines / 1_000_000}M-line job`,
          "Baton, SQLite",
          "MiB max RSS",
          memory.get(lines) ?? [],
          "flat: independent of output size",
        ),
      ),
    ];
  } finally {
    await stopProcess(worker.child);
    await stopProcess(server.child);
    rmSync(dir, { recursive: true, force: true });
  }
}

let lastJob = "";

async function runJob(url: string, lines: number, workerPid: number) {
  let maxRss = 0;
  const sampler = setInterval(() => {
    maxRss = Math.max(maxRss, rssMiB(workerPid));
  }, 50);
  const started = performance.now();
  const response = await fetch(`${url}/v1/jobs`, {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify({ command: ["seq", "1", String(lines)], maxLogBytes: 2 ** 40 }),
  });
  const job = (await response.json()) as JobJson;
  lastJob = job.id;
  for (;;) {
    const current = (await (await fetch(`${url}/v1/jobs/${job.id}`)).json()) as JobJson;
    if (current.state === "succeeded") break;
    if (current.state === "failed")
      throw new Error(`bench job failed: ${current.failure?.message}`);
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
  const seconds = (performance.now() - started) / 1000;
  clearInterval(sampler);
  return { seconds, maxRss };
}

/** Reads the last job's output back through the API; returns the seconds it took. */
async function readBack(url: string, expected: number): Promise<number> {
  const started = performance.now();
  let after = 0;
  let count = 0;
  for (;;) {
    const response = await fetch(`${url}/v1/jobs/${lastJob}/logs?after=${after}&limit=10000`);
    const page = (await response.json()) as { events: unknown[]; next: number };
    if (page.events.length === 0) break;
    count += page.events.length;
    after = page.next;
  }
  if (count !== expected) throw new Error(`read back ${count} lines, expected ${expected}`);
  return (performance.now() - started) / 1000;
}
