import { existsSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import Database from "better-sqlite3";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { JobJson } from "../../src/api/jobJson.js";
import type { LogEvent } from "../../src/core/logEvent.js";
import { api } from "../helpers/api.js";
import {
  baton,
  type Daemon,
  eventually,
  startServerDaemon,
  startWorkerDaemon,
  tempDir,
} from "../helpers/processes.js";

const dir = tempDir();
const dbPath = join(dir.path, "baton.db");
const daemons: Daemon[] = [];
let url = "";
let worker: Daemon;
let env: Record<string, string>;

beforeAll(async () => {
  const store = `sqlite:${dbPath}`;
  const server = await startServerDaemon(store);
  daemons.push(server.daemon);
  url = server.url;
  env = { BATON_SERVER: url };
  const defaultQueue = ["--queues", "default"];
  daemons.push(await startWorkerDaemon(store, "logs-w", join(dir.path, "logs-w"), defaultQueue));
  // A worker of its own for the memory measurement, untouched by the other tests' output.
  worker = await startWorkerDaemon(store, "slow-w", join(dir.path, "slow-w"), ["--queues", "slow"]);
  daemons.push(worker);
});
afterAll(async () => {
  await Promise.all(daemons.map((d) => d.stop("SIGKILL")));
  dir.remove();
});

async function finished(id: string, timeoutMs = 60_000): Promise<JobJson> {
  return eventually(
    async () => {
      const job = await api(url).job(id);
      return ["succeeded", "failed", "cancelled"].includes(job.state) ? job : undefined;
    },
    timeoutMs,
    `job ${id} to finish`,
  );
}

const numbers = (from: number, to: number) =>
  Array.from({ length: to - from + 1 }, (_, i) => `${from + i}\n`).join("");

describe("job output", () => {
  it("keeps every one of a million lines, in order, each labelled with its attempt", async () => {
    const id = await api(url).submit({
      command: [
        "sh",
        "-c",
        'if [ "$BATON_ATTEMPT" = 1 ]; then seq 1 200000; exit 1; fi; seq 200001 1000000',
      ],
      maxAttempts: 2,
      backoff: { baseMs: 1 },
    });
    const job = await finished(id);
    expect(job.state).toBe("succeeded");
    expect(job.attempts?.map((a) => a.exitCode)).toEqual([1, 0]);
    const all = await baton(["logs", id], { env });
    expect(all.code).toBe(0);
    // No gap, no duplicate, in order: exactly what the two attempts printed.
    expect(all.stdout === numbers(1, 1_000_000)).toBe(true);
    const first = await baton(["logs", id, "--attempt", "1"], { env });
    expect(first.stdout === numbers(1, 200_000)).toBe(true);
    const second = await baton(["logs", id, "--attempt", "2"], { env });
    expect(second.stdout === numbers(200_001, 1_000_000)).toBe(true);
  }, 90_000);

  it("reads progress, structured events and over-long lines, and warns about bad directives", async () => {
    const long = "x".repeat(150_000);
    const id = await api(url).submit({
      command: [
        "sh",
        "-c",
        `echo '::progress 40'; echo '::event {"step":"upload"}'; echo '::event {oops'; ` +
          "head -c 150000 /dev/zero | tr '\\0' x; echo; echo after",
      ],
    });
    const job = await finished(id);
    expect(job.progress).toBe(40);
    const json = await baton(["logs", id, "--json"], { env });
    const events = json.stdout
      .trim()
      .split("\n")
      .map((line) => JSON.parse(line) as LogEvent);
    expect(events.map((e) => [e.stream, e.kind, e.cut])).toEqual([
      ["stdout", "progress", false],
      ["stdout", "event", false],
      ["stdout", "line", false],
      ["system", "warning", false],
      ["stdout", "line", true],
      ["stdout", "line", true],
      ["stdout", "line", false],
      ["stdout", "line", false],
    ]);
    expect(events[1]?.data).toEqual({ step: "upload" });
    const text = await baton(["logs", id], { env });
    // The cut line comes back whole; the warning goes to stderr, marked as Baton's own.
    expect(text.stdout).toBe(
      `::progress 40\n::event {"step":"upload"}\n::event {oops\n${long}\nafter\n`,
    );
    expect(text.stderr).toMatch(/^baton: ::event is not followed by valid JSON/);
    const shown = await baton(["jobs", "show", id], { env });
    expect(shown.stdout).toMatch(/progress:\s+40%/);
  });

  it("stores output up to the job's cap and counts the rest, without failing the job", async () => {
    const submitted = await baton(
      ["submit", "--max-log-bytes", "10000", "--", "sh", "-c", "seq 1 20000; echo done"],
      { env },
    );
    const id = submitted.stdout.trim();
    const job = await finished(id);
    expect(job.state).toBe("succeeded");
    expect(job.output.storedBytes).toBeLessThanOrEqual(10_000);
    expect(job.output.droppedLines).toBeGreaterThan(15_000);
    const logs = await baton(["logs", id], { env });
    expect(logs.stderr).toMatch(/baton: output reached this job's cap of 10000 bytes/);
    const kept = logs.stdout.trim().split("\n").length;
    expect(kept + job.output.droppedLines).toBe(20_001);
  });

  it("follows a running job live and exits with its exit code when it ends", async () => {
    const marker = join(dir.path, "follow-go");
    const id = await api(url).submit({
      command: [
        "sh",
        "-c",
        `echo first; while [ ! -e ${marker} ]; do sleep 0.02; done; echo second; exit 4`,
      ],
    });
    const follower = baton(["logs", "-f", id], { env });
    // The first line shows while the job still runs (it waits for the marker).
    await api(url).firstLine(id);
    const job = await api(url).job(id);
    expect(job.state).toBe("running");
    expect(existsSync(marker)).toBe(false);
    writeFileSync(marker, "");
    const result = await follower;
    expect(result.stdout).toBe("first\nsecond\n");
    expect(result.code).toBe(4);
  });

  it("resumes an SSE stream from Last-Event-ID with no gap and no duplicate", async () => {
    const marker = join(dir.path, "sse-go");
    const id = await api(url).submit({
      command: [
        "sh",
        "-c",
        `seq 1 500; while [ ! -e ${marker} ]; do sleep 0.02; done; seq 501 1000`,
      ],
    });
    const firstPart = await readSse(id, undefined, 200);
    writeFileSync(marker, "");
    await finished(id);
    const rest = await readSse(id, firstPart.at(-1)?.seq, Number.POSITIVE_INFINITY);
    const lines = [...firstPart, ...rest].map((e) => e.line);
    expect(lines).toEqual(Array.from({ length: 1000 }, (_, i) => String(i + 1)));
  });

  it("applies backpressure to a job when the store is slow, with the worker's memory bounded", async () => {
    // A real slow store: another connection holds SQLite's write lock most of the time.
    const hog = new Database(dbPath);
    hog.pragma("busy_timeout = 10000");
    let hogging = true;
    const hogLoop = (async () => {
      while (hogging) {
        hog.exec("BEGIN IMMEDIATE");
        await new Promise((resolve) => setTimeout(resolve, 100));
        hog.exec("COMMIT");
        await new Promise((resolve) => setTimeout(resolve, 15));
      }
    })();
    let maxRssKb = 0;
    const sampler = setInterval(() => {
      maxRssKb = Math.max(maxRssKb, rssKb(worker.pid));
    }, 50);
    try {
      // 200,000 lines of 91 bytes: 18 MB, more than the supervisor keeps unacknowledged (8 MiB).
      const id = await api(url).submit({
        queue: "slow",
        command: ["sh", "-c", 'seq -f "%090g" 1 200000'],
      });
      const job = await finished(id, 80_000);
      expect(job.state).toBe("succeeded");
      expect(job.output.storedBytes).toBe(200_000 * 90);
      expect(job.output.droppedLines).toBe(0);
    } finally {
      hogging = false;
      clearInterval(sampler);
      await hogLoop;
      hog.close();
    }
    // The counter of backpressure applied, as the worker reports it.
    const pauses = /"outputPauses":(\d+)/.exec(worker.stderr);
    expect(Number(pauses?.[1])).toBeGreaterThan(0);
    // Bound: the worker holds at most its buffer (10,000 lines) and the supervisor its 8 MiB
    // window, whatever the job prints; 200 MiB of resident memory is far above either.
    process.stdout.write(`worker max RSS under a slow store: ${Math.round(maxRssKb / 1024)} MiB\n`);
    expect(maxRssKb).toBeGreaterThan(0);
    expect(maxRssKb).toBeLessThan(200 * 1024);
  }, 90_000);
});

function rssKb(pid: number): number {
  const status = readFileSync(`/proc/${pid}/status`, "utf8");
  return Number(/VmRSS:\s+(\d+)/.exec(status)?.[1] ?? 0);
}

/** Reads a job's SSE log stream (resuming after `lastId`) until `count` events or its end. */
async function readSse(id: string, lastId: number | undefined, count: number): Promise<LogEvent[]> {
  const abort = new AbortController();
  const headers: Record<string, string> =
    lastId === undefined ? {} : { "last-event-id": String(lastId) };
  const response = await fetch(`${url}/v1/jobs/${id}/logs?follow=1`, {
    headers,
    signal: abort.signal,
  });
  const events: LogEvent[] = [];
  const decoder = new TextDecoder();
  let text = "";
  try {
    for await (const chunk of response.body as unknown as AsyncIterable<Uint8Array>) {
      text += decoder.decode(chunk, { stream: true });
      let end = text.indexOf("\n\n");
      while (end !== -1) {
        const block = text.slice(0, end);
        text = text.slice(end + 2);
        end = text.indexOf("\n\n");
        if (/^event: end$/m.test(block)) return events;
        const data = /^data: (.*)$/m.exec(block)?.[1];
        if (data === undefined) continue;
        events.push(JSON.parse(data) as LogEvent);
        if (events.length >= count) return events;
      }
    }
    return events;
  } finally {
    abort.abort();
  }
}
