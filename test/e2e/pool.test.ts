import { writeFileSync } from "node:fs";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { JobJson } from "../../src/api/jobJson.js";
import type { StatsJson, WorkerJson } from "../../src/api/poolJson.js";
import type { Explanation } from "../../src/core/explain.js";
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
const store = `sqlite:${join(dir.path, "baton.db")}`;
const FAST = ["--heartbeat-interval", "100ms", "--lease-ttl", "2s", "--kill-grace", "500ms"];
let server: Daemon;
let url = "";
let env: Record<string, string>;
const daemons: Daemon[] = [];

beforeAll(async () => {
  const started = await startServerDaemon(store);
  server = started.daemon;
  url = started.url;
  env = { BATON_SERVER: url };
});
afterAll(async () => {
  await Promise.all(daemons.map((d) => d.stop("SIGKILL")));
  await server.stop();
  dir.remove();
});

async function startWorker(name: string, queue: string, args: string[] = []): Promise<Daemon> {
  const worker = await startWorkerDaemon(store, name, join(dir.path, name), [
    "--queues",
    queue,
    ...FAST,
    "--cpus",
    "4",
    "--memory",
    "1000",
    ...args,
  ]);
  daemons.push(worker);
  return worker;
}

async function cli<T>(args: string[]): Promise<T> {
  const result = await baton([...args, "--json"], { env });
  if (result.code !== 0) throw new Error(`baton ${args.join(" ")}: ${result.stderr}`);
  return JSON.parse(result.stdout) as T;
}

async function states(ids: readonly string[]): Promise<string[]> {
  return Promise.all(ids.map(async (id) => (await api(url).job(id)).state));
}

async function until(ids: readonly string[], wanted: (states: string[]) => boolean) {
  return eventually(async () => {
    const now = await states(ids);
    return wanted(now) ? now : undefined;
  });
}

const count = (list: string[], state: string) => list.filter((s) => s === state).length;

describe("the worker pool", () => {
  it("lists a worker, resizes it while it runs, and drains it until it exits", async () => {
    const worker = await startWorker("pool-1", "pool", ["--concurrency", "2"]);
    const [listed] = (await cli<WorkerJson[]>(["workers", "ls"])).filter(
      (w) => w.name === "pool-1",
    );
    expect(listed).toMatchObject({
      name: "pool-1",
      state: "running",
      queues: ["pool"],
      concurrency: 2,
      cpus: 4,
      running: 0,
    });

    await cli(["workers", "resize", "pool-1", "1"]);
    await worker.waitForLog(/concurrency changed by an operator/);
    const marker = join(dir.path, "pool-go");
    const wait = `while [ ! -e ${marker} ]; do sleep 0.02; done`;
    const ids: string[] = [];
    for (let i = 0; i < 3; i++) {
      ids.push(await api(url).submit({ queue: "pool", command: ["sh", "-c", wait] }));
    }
    await until(ids, (s) => count(s, "running") === 1);
    const waiting = ids[2] as string;
    const why = await cli<Explanation>(["jobs", "explain", waiting]);
    expect(why.reasons.map((r) => r.code)).toContain("workers_busy");
    expect(count(await states(ids), "running")).toBe(1);

    await cli(["workers", "resize", "pool-1", "3"]);
    await until(ids, (s) => count(s, "running") === 3);

    const drained = await cli<WorkerJson>(["workers", "drain", "pool-1"]);
    expect(drained.state).toBe("draining");
    await worker.waitForLog(/draining: running jobs finish/);
    const late = await api(url).submit({ queue: "pool", command: ["true"] });
    expect(worker.child.exitCode).toBeNull(); // its jobs still run
    writeFileSync(marker, "");
    expect(await worker.exited).toEqual({ code: 0, signal: null });
    expect(await states(ids)).toEqual(["succeeded", "succeeded", "succeeded"]);
    expect(await states([late])).toEqual(["pending"]); // nothing new started while draining
    const after = (await cli<WorkerJson[]>(["workers", "ls"])).find((w) => w.name === "pool-1");
    expect(after?.state).toBe("stopped");
    const refused = await baton(["workers", "resize", "pool-1", "2"], { env });
    expect([refused.code, refused.stderr]).toEqual([1, "baton: worker pool-1 is stopped\n"]);
  });
});

describe("dead letters and retries", () => {
  it("replays a dead letter through the CLI, keeping its history, and retries a cancelled job", async () => {
    await startWorker("dlq-1", "dlq");
    const marker = join(dir.path, "dlq-fixed");
    const flaky = await api(url).submit({
      queue: "dlq",
      command: ["sh", "-c", `test -e ${marker} || exit 4`],
    });
    await until([flaky], (s) => s[0] === "failed");
    const dead = await cli<{ jobs: JobJson[] }>(["dlq", "ls", "--queue", "dlq"]);
    expect(dead.jobs.map((job) => job.id)).toEqual([flaky]);

    writeFileSync(marker, "");
    const replay = await baton(["dlq", "replay", flaky], { env });
    expect([replay.code, replay.stdout]).toEqual([0, `${flaky}\n`]);
    await until([flaky], (s) => s[0] === "succeeded");
    const job = await api(url).job(flaky);
    expect(job.attempts?.map((a) => [a.attempt, a.replayOf, a.failure?.reason ?? "ok"])).toEqual([
      [1, null, "exit_code"],
      [2, 1, "ok"],
    ]);
    expect(job.replays.map((r) => r.failure?.reason)).toEqual(["exit_code"]);
    expect((await cli<{ jobs: JobJson[] }>(["dlq", "ls", "--queue", "dlq"])).jobs).toEqual([]);

    const later = await api(url).submit({ queue: "dlq", command: ["true"], delayMs: 3_600_000 });
    expect((await baton(["cancel", later], { env })).code).toBe(0);
    expect((await baton(["retry", later], { env })).code).toBe(0);
    await until([later], (s) => s[0] === "succeeded");

    const again = await baton(["retry", flaky], { env });
    expect([again.code, again.stderr]).toEqual([
      1,
      `baton: job ${flaky} is succeeded, not failed or cancelled\n`,
    ]);
    const usage = await baton(["dlq", "replay", "--queue", "dlq"], { env });
    expect([usage.code, usage.stderr]).toEqual([2, "baton: --queue goes with --all\n"]);
  });
});

describe("why a job waits, and the statistics", () => {
  it("warns at submit of a job too big for every live worker and explains it", async () => {
    await startWorker("small-1", "small");
    const submitted = await baton(["submit", "--queue", "small", "--cpus", "64", "--", "true"], {
      env,
    });
    const id = submitted.stdout.trim();
    expect(submitted.code).toBe(0);
    expect(submitted.stderr).toBe(
      `baton: warning: job ${id} needs 64 cpus; the largest live worker serving queue small has 4 cpus, 1000 MiB\n`,
    );
    const explained = await baton(["jobs", "explain", id], { env });
    expect(explained.stdout).toContain("needs 64 cpus");
    const nobody = await api(url).submit({ queue: "nobody", command: ["true"] });
    expect((await cli<Explanation>(["jobs", "explain", nobody])).reasons).toEqual([
      { code: "no_worker", message: "no live worker serves queue nobody" },
    ]);
  });

  it("counts jobs per queue, with run times", async () => {
    await startWorker("stats-1", "stats");
    const ids = await Promise.all(
      [0, 1, 2].map((i) => api(url).submit({ queue: "stats", command: ["sh", "-c", `exit ${i}`] })),
    );
    await until(ids, (s) => s.every((state) => state !== "pending" && state !== "running"));
    const stats = await cli<StatsJson>(["stats", "--window", "1h"]);
    expect(stats.queues.stats).toMatchObject({
      submitted: 3,
      succeeded: 1,
      failed: 2,
      cancelled: 0,
      running: 0,
      queued: 0,
    });
    expect(stats.queues.stats?.p95RunMs).toBeGreaterThanOrEqual(stats.queues.stats?.avgRunMs ?? 0);
    const bad = await fetch(`${url}/v1/stats?window=soon`);
    expect(bad.status).toBe(400);
  });

  it("answers a repeated idempotency key with the same job: 201, then 200", async () => {
    const post = () =>
      fetch(`${url}/v1/jobs`, {
        method: "POST",
        headers: { "content-type": "application/json" },
        body: JSON.stringify({ queue: "nobody", command: ["true"], idempotencyKey: "nightly-1" }),
      });
    const first = await post();
    const second = await post();
    expect([first.status, second.status]).toEqual([201, 200]);
    const [a, b] = (await Promise.all([first.json(), second.json()])) as JobJson[];
    expect(b?.id).toBe(a?.id);
  });
});
