import { join } from "node:path";
import { pino } from "pino";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import type { JobDetail } from "../../src/core/job.js";
import { normalizeJobInput } from "../../src/core/jobInput.js";
import type { Store } from "../../src/store/store.js";
import { Worker } from "../../src/worker/worker.js";
import { eventually, tempDir } from "../helpers/processes.js";
import { backends } from "../helpers/stores.js";

/**
 * Many jobs with random priorities, cpus, queues and concurrency keys, run by workers of
 * different capacities, each on its own store connection. Each job prints the clock when
 * its process starts and ends; those run intervals must show every rule held: no worker
 * over its cpus or slots, no queue or key over its limit, no job on a worker that does not
 * serve its queue, and no higher-priority ready job left waiting while a lower one took a
 * worker that had room for it.
 */
interface Pool {
  name: string;
  cpus: number;
  concurrency: number;
  queues: string[] | null;
}
const POOL: Pool[] = [
  { name: "big", cpus: 4, concurrency: 4, queues: ["a", "b"] },
  { name: "mid", cpus: 2, concurrency: 3, queues: ["b", "c"] },
  { name: "small", cpus: 1, concurrency: 2, queues: null },
];
const QUEUE_LIMITS: Record<string, number> = { b: 2 };
const KEY_LIMITS: Record<string, number> = { k1: 1, k2: 2 };
const JOBS = 48;
/**
 * Claims are stamped when the claim starts, completions when the completion starts: under
 * load, a stamp can precede its commit by this much. A job claimed within this long of
 * another is not counted as having waited, and a slot counts as taken until this long after
 * its completion's stamp.
 */
const SLACK_MS = 150;

/** A small seeded generator (mulberry32), so that a failure can be replayed by its seed. */
function random(seed: number): () => number {
  let state = seed >>> 0;
  return () => {
    state = (state + 0x6d2b79f5) >>> 0;
    let t = state;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

interface Run {
  id: number;
  priority: number;
  queue: string;
  key: string | null;
  cpus: number;
  worker: string;
  /** The process's own clock readings at its start and end. */
  start: number;
  end: number;
  /** The store's stamps of the claim and of the completion. */
  claimedAt: number;
  completedAt: number;
}

const stores: Store[] = [];
const workers: Worker[] = [];
let dir: ReturnType<typeof tempDir>;

describe.each(await backends())("$name store", (backend) => {
  beforeEach(async () => {
    dir = tempDir();
    await backend.setup();
  });
  afterEach(async () => {
    await Promise.all(workers.splice(0).map((worker) => worker.stop(0)));
    await Promise.all(stores.splice(0).map((store) => store.close()));
    await backend.teardown();
    dir.remove();
  });

  it("keeps every capacity, limit and priority rule across workers", async () => {
    const seed = Number(process.env.BATON_TEST_SEED ?? Date.now() % 100_000);
    const next = random(seed);
    const pick = <T>(items: readonly T[]): T => items[Math.floor(next() * items.length)] as T;
    const store = await backend.open();
    stores.push(store);
    for (const [queue, limit] of Object.entries(QUEUE_LIMITS)) {
      await store.updateQueue(queue, { maxRunning: limit });
    }
    const now = Date.now();
    const specs = Array.from({ length: JOBS }, () => {
      const queue = pick(["a", "b", "c"]);
      const key = pick([null, null, "k1", "k2"]);
      // Every job fits at least one worker that serves its queue.
      const cpus = pick(queue === "a" ? [0.5, 1, 2, 3] : [0.5, 1, 2]);
      return normalizeJobInput(
        {
          queue,
          priority: 1 + Math.floor(next() * 10),
          resources: { cpus },
          // Nanosecond clock at the process's start and end.
          command: ["sh", "-c", `date +%s%N; sleep ${(0.1 + next() * 0.3).toFixed(2)}; date +%s%N`],
          ...(key === null ? {} : { concurrencyKey: key, concurrencyLimit: KEY_LIMITS[key] }),
        },
        now,
      );
    });
    const ids = (await store.submitBatch(specs)).map((answer) => answer.job.id);

    for (const spec of POOL) {
      const own = await backend.open();
      stores.push(own);
      const worker = new Worker({
        store: own,
        logger: pino({ level: "silent" }),
        name: spec.name,
        queues: spec.queues,
        concurrency: spec.concurrency,
        cpus: spec.cpus,
        memoryMb: null,
        stateDir: join(dir.path, spec.name),
        leaseTtlMs: 10_000,
        heartbeatIntervalMs: 1_000,
        maxHeartbeatFailures: 3,
        killGraceMs: 200,
        flushIntervalMs: 100,
        flushMaxEvents: 50,
        maxBufferedEvents: 10_000,
        pollIntervalMs: 100,
        reap: false,
        reapIntervalMs: 1_000,
        supervise: false,
      });
      workers.push(worker);
    }
    await Promise.all(workers.map((worker) => worker.start()));

    const jobs = await eventually(
      async () => {
        const all = await Promise.all(ids.map((id) => store.get(id)));
        return all.every((job) => job?.state === "succeeded") ? (all as JobDetail[]) : undefined;
      },
      60_000,
      "every job to succeed",
    );
    const runs: Run[] = await Promise.all(
      jobs.map(async (job) => {
        expect(job.attempts).toHaveLength(1);
        const lines = await store.readLogs(job.id, { after: 0, limit: 10 });
        const [start, end] = lines.map((event) => Number(event.line) / 1e6);
        return {
          id: Number(job.id),
          priority: job.priority,
          queue: job.queue,
          key: job.concurrencyKey,
          cpus: job.resources.cpus,
          worker: job.attempts[0]?.workerId ?? "",
          start: start ?? Number.NaN,
          end: end ?? Number.NaN,
          claimedAt: job.attempts[0]?.startedAt ?? Number.NaN,
          completedAt: job.attempts[0]?.finishedAt ?? Number.NaN,
        };
      }),
    );
    const violations = checkRules(runs);
    expect(violations, `seed ${seed} (BATON_TEST_SEED=${seed} replays it)`).toEqual([]);
    // The pool was used: every worker ran something.
    expect(new Set(runs.map((run) => run.worker))).toEqual(new Set(POOL.map((w) => w.name)));
  }, 90_000);
});

/** Every broken rule, in words; empty when the schedule was right. */
function checkRules(runs: readonly Run[]): string[] {
  const violations: string[] = [];
  // Processes running when `run`'s started: a slot is given back only after its process
  // has ended, so these intervals must never overlap beyond a limit.
  const overlapping = (run: Run, where: (other: Run) => boolean) =>
    runs.filter((o) => o !== run && where(o) && o.start <= run.start && o.end > run.start);
  // Jobs that may still have held a slot when `run` was claimed: erring this way, a job
  // counts as passed over only if the worker surely had room for it.
  const holding = (run: Run, where: (other: Run) => boolean) =>
    runs.filter(
      (o) =>
        o !== run &&
        where(o) &&
        o.claimedAt <= run.claimedAt + SLACK_MS &&
        o.completedAt > run.claimedAt - SLACK_MS,
    );

  for (const run of runs) {
    const worker = POOL.find((w) => w.name === run.worker);
    if (!worker || Number.isNaN(run.start) || Number.isNaN(run.end)) {
      violations.push(`job ${run.id} ran on ${run.worker} without recording its interval`);
      continue;
    }
    if (worker.queues !== null && !worker.queues.includes(run.queue)) {
      violations.push(`job ${run.id} of queue ${run.queue} ran on ${worker.name}`);
    }
    const beside = overlapping(run, (o) => o.worker === worker.name);
    const cpus = beside.reduce((sum, o) => sum + o.cpus, run.cpus);
    if (cpus > worker.cpus + 1e-9) {
      violations.push(`${worker.name} ran ${cpus} cpus at once (has ${worker.cpus})`);
    }
    if (beside.length + 1 > worker.concurrency) {
      violations.push(`${worker.name} ran ${beside.length + 1} jobs at once`);
    }
    const queueLimit = QUEUE_LIMITS[run.queue];
    const inQueue = overlapping(run, (o) => o.queue === run.queue).length + 1;
    if (queueLimit !== undefined && inQueue > queueLimit) {
      violations.push(`queue ${run.queue} ran ${inQueue} at once (limit ${queueLimit})`);
    }
    const keyLimit = run.key === null ? undefined : KEY_LIMITS[run.key];
    const withKey = overlapping(run, (o) => o.key === run.key).length + 1;
    if (keyLimit !== undefined && withKey > keyLimit) {
      violations.push(`key ${run.key} ran ${withKey} at once (limit ${keyLimit})`);
    }

    // A job that comes first, was still waiting, and that this worker had room for.
    const held = holding(run, (o) => o.worker === worker.name);
    const free = worker.cpus - held.reduce((sum, o) => sum + o.cpus, 0);
    const admits = (h: Run) => {
      const queue = QUEUE_LIMITS[h.queue];
      const key = h.key === null ? undefined : KEY_LIMITS[h.key];
      return (
        (queue === undefined || holding(run, (o) => o.queue === h.queue).length < queue) &&
        (key === undefined || holding(run, (o) => o.key === h.key).length < key)
      );
    };
    const passedOver = runs.find(
      (h) =>
        (h.priority < run.priority || (h.priority === run.priority && h.id < run.id)) &&
        h.claimedAt > run.claimedAt + SLACK_MS &&
        (worker.queues === null || worker.queues.includes(h.queue)) &&
        h.cpus <= free + 1e-9 &&
        held.length < worker.concurrency &&
        admits(h),
    );
    if (passedOver) {
      violations.push(
        `${worker.name} took job ${run.id} (priority ${run.priority}) while job ` +
          `${passedOver.id} (priority ${passedOver.priority}) could run there and waited`,
      );
    }
  }
  return violations;
}
