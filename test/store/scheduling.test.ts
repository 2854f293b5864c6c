import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { explainWait, type WaitCode } from "../../src/core/explain.js";
import type { JobInput } from "../../src/core/jobInput.js";
import { normalizeJobInput } from "../../src/core/jobInput.js";
import type { AttemptOutcome } from "../../src/core/outcome.js";
import type { WorkerBeat } from "../../src/core/pool.js";
import type { ClaimRequest, Store } from "../../src/store/store.js";
import { backends } from "../helpers/stores.js";

/**
 * Conformance of both stores for the scheduling features around the claim: the worker
 * registry, retries and dead-letter replays, statistics, the facts `explain` reads, and the
 * idempotency window. On a fake clock.
 */
let clock = 1_000_000;
let store: Store;
const options = { now: () => clock, random: () => 0.5, idempotencyRetentionMs: 60_000 };

const submit = (input: Partial<JobInput> = {}) =>
  store.submit(normalizeJobInput({ command: ["true"], ...input }, clock)).then((r) => r.job);
const request = (overrides: Partial<ClaimRequest> = {}): ClaimRequest => ({
  workerId: "w1",
  queues: null,
  kinds: ["shell"],
  freeCpus: 4,
  freeMemoryMb: 1_000,
  leaseTtlMs: 30_000,
  ...overrides,
});
const beat = (overrides: Partial<WorkerBeat> = {}): WorkerBeat => ({
  name: "w1",
  host: "host-a",
  pid: 42,
  queues: null,
  runs: { shell: true, handlers: [] },
  concurrency: 4,
  cpus: 4,
  memoryMb: 1_000,
  ttlMs: 30_000,
  fresh: true,
  ...overrides,
});
const failed: AttemptOutcome = {
  state: "failed",
  exitCode: 3,
  signal: null,
  failure: { reason: "exit_code", message: "exited with code 3" },
};
const ok: AttemptOutcome = { state: "succeeded", exitCode: 0, signal: null };

/** Claims the job (it must be next) and ends its attempt with `outcome` after `ms`. */
async function run(worker: string, outcome: AttemptOutcome, ms = 0) {
  const claim = await store.claim(request({ workerId: worker }));
  if (!claim) throw new Error("nothing to claim");
  clock += ms;
  await store.complete(claim.lease, outcome);
  return claim.job.id;
}

async function reasons(id: string): Promise<WaitCode[]> {
  const facts = await store.waitFacts(id);
  if (!facts) throw new Error(`no job ${id}`);
  return explainWait(facts).reasons.map((reason) => reason.code);
}

describe.each(await backends())("$name store", (backend) => {
  beforeEach(async () => {
    clock = 1_000_000;
    await backend.setup();
    store = await backend.open(options);
  });
  afterEach(async () => {
    await store.close();
    await backend.teardown();
  });

  describe("worker registry", () => {
    it("lists a worker with its capacity and what its running jobs use", async () => {
      expect(await store.beatWorker(beat())).toEqual({ concurrency: 4, drain: false });
      const job = await submit({ resources: { cpus: 1.5, memoryMb: 300 } });
      await store.claim(request());
      const [worker] = await store.listWorkers();
      expect(worker).toMatchObject({
        name: "w1",
        host: "host-a",
        state: "running",
        queues: null,
        concurrency: 4,
        cpus: 4,
        memoryMb: 1_000,
        running: 1,
        runningJobs: [job.id],
        usedCpus: 1.5,
        usedMemoryMb: 300,
        lastHeartbeatAt: clock,
      });
    });

    it("hands an operator's resize and drain to the worker at its next beat", async () => {
      await store.beatWorker(beat());
      const resized = await store.updateWorker("w1", { concurrency: 2 });
      expect(resized?.concurrency).toBe(2);
      expect(await store.beatWorker(beat({ fresh: false }))).toEqual({
        concurrency: 2,
        drain: false,
      });
      expect((await store.updateWorker("w1", { drain: true }))?.state).toBe("draining");
      expect(await store.beatWorker(beat({ fresh: false }))).toEqual({
        concurrency: 2,
        drain: true,
      });
      // A new life of the worker starts from its own settings.
      expect(await store.beatWorker(beat())).toEqual({ concurrency: 4, drain: false });
      expect(await store.updateWorker("nobody", { concurrency: 1 })).toBeNull();
    });

    it("counts a silent worker lost and one that stopped cleanly stopped", async () => {
      await store.beatWorker(beat({ name: "quiet" }));
      await store.beatWorker(beat({ name: "gone" }));
      await store.stopWorker("gone");
      clock += 30_001;
      await store.beatWorker(beat({ name: "alive" }));
      // A late beat of a stopped worker does not bring it back; only a new life does.
      await store.beatWorker(beat({ name: "gone", fresh: false }));
      const states = Object.fromEntries((await store.listWorkers()).map((w) => [w.name, w.state]));
      expect(states).toEqual({ alive: "running", gone: "stopped", quiet: "lost" });
    });
  });

  describe("retry and dead letters", () => {
    it("replays a failed job with fresh attempts, keeping its history and linking the replay", async () => {
      const job = await submit({ maxAttempts: 1 });
      await run("w1", failed);
      clock += 1_000;
      const [replayed] = await store.retry({ ids: [job.id], states: ["failed"] });
      expect(replayed).toMatchObject({ state: "pending", attemptsUsed: 0, failure: null });
      expect(replayed?.replays).toEqual([{ at: clock, afterAttempt: 1, failure: failed.failure }]);
      await run("w2", ok);
      const done = await store.get(job.id);
      expect(done?.state).toBe("succeeded");
      expect(
        done?.attempts.map((a) => [a.attempt, a.workerId, a.replayOf, a.failure?.reason]),
      ).toEqual([
        [1, "w1", null, "exit_code"],
        [2, "w2", 1, undefined],
      ]);
    });

    it("moves only jobs in the states asked for, and all of a queue's with no ids", async () => {
      const a = await submit({ queue: "a" });
      const b = await submit({ queue: "b" });
      const waiting = await submit({ queue: "a", delayMs: 60_000 });
      await run("w1", failed);
      await run("w1", failed);
      const cancelled = await submit({ queue: "a" });
      await store.cancel(cancelled.id);
      expect(
        await store.retry({ ids: [waiting.id, cancelled.id, "999"], states: ["failed"] }),
      ).toEqual([]);
      const moved = await store.retry({ queue: "a", states: ["failed"] });
      expect(moved.map((job) => job.id)).toEqual([a.id]);
      expect((await store.get(b.id))?.state).toBe("failed");
      const again = await store.retry({ ids: [cancelled.id], states: ["failed", "cancelled"] });
      expect(again.map((job) => [job.id, job.state])).toEqual([[cancelled.id, "pending"]]);
    });
  });

  describe("stats", () => {
    it("counts per queue and overall, with average and p95 run times of the window", async () => {
      await submit({ queue: "old" });
      await run("w1", ok, 5_000); // finished before the window
      const since = clock + 1;
      clock += 10;
      for (let i = 1; i <= 20; i++) {
        await submit({ queue: "q" });
        await run("w1", i === 20 ? failed : ok, i * 100);
      }
      await submit({ queue: "q" });
      await store.claim(request());
      await submit({ queue: "q" });
      const cancelled = await submit({ queue: "q" });
      await store.cancel(cancelled.id);
      const stats = await store.stats(since);
      expect(stats.queues.q).toEqual({
        submitted: 23,
        succeeded: 19,
        failed: 1,
        cancelled: 1,
        running: 1,
        queued: 1,
        avgRunMs: 1_050,
        p95RunMs: 1_900,
      });
      expect(stats.queues.old).toMatchObject({ submitted: 0, succeeded: 0, avgRunMs: null });
      expect(stats.overall).toMatchObject({
        submitted: 23,
        succeeded: 19,
        running: 1,
        p95RunMs: 1_900,
      });
    });
  });

  describe("why a job waits", () => {
    it("names the time it is scheduled for, a paused queue, and a missing worker", async () => {
      const job = await submit({ delayMs: 60_000, queue: "night" });
      await store.updateQueue("night", { paused: true });
      expect(await reasons(job.id)).toEqual(["scheduled", "queue_paused", "no_worker"]);
    });

    it("names the queue's and the key's limits with the jobs holding them", async () => {
      await store.beatWorker(beat());
      await store.updateQueue("q", { maxRunning: 1 });
      const holder = await submit({ queue: "q", concurrencyKey: "customer-7" });
      await store.claim(request());
      const waiting = await submit({ queue: "q", concurrencyKey: "customer-7" });
      const facts = await store.waitFacts(waiting.id);
      const explained = explainWait(facts!).reasons;
      expect(explained.map((r) => [r.code, r.holders])).toEqual([
        ["queue_limit", [holder.id]],
        ["key_limit", [holder.id]],
      ]);
    });

    it("tells a job too big for every live worker from one whose workers are full", async () => {
      await store.beatWorker(beat({ cpus: 2, concurrency: 1 }));
      const big = await submit({ resources: { cpus: 3 } });
      expect(await reasons(big.id)).toEqual(["too_big"]);
      await store.updateQueue("default", { paused: true });
      const small = await submit({ queue: "other" });
      await store.claim(request({ queues: ["other"] }));
      const next = await submit({ queue: "other" });
      expect(await reasons(next.id)).toEqual(["workers_busy"]);
      expect(await reasons(small.id)).toEqual(["not_pending"]);
    });

    it("says when no live worker runs the job's kind or has its handler", async () => {
      await store.beatWorker(
        beat({ name: "thumbs", runs: { shell: false, handlers: ["resize"] } }),
      );
      const shellJob = await submit();
      const resize = await store.submit(
        normalizeJobInput({ handler: "resize", payload: { width: 64 } }, clock),
      );
      const email = await store.submit(
        normalizeJobInput({ handler: "sendEmail", payload: { to: "a@example.com" } }, clock),
      );
      const workers = await store.listWorkers();
      expect(workers.map((w) => [w.name, w.runs])).toEqual([
        ["thumbs", { shell: false, handlers: ["resize"] }],
      ]);
      const explain = async (id: string) => explainWait((await store.waitFacts(id))!).reasons;
      expect(await explain(shellJob.id)).toEqual([
        {
          code: "no_runner",
          message: "no live worker serving queue default runs shell jobs (thumbs: handlers resize)",
          workers: ["thumbs"],
        },
      ]);
      // (It also waits behind the two older jobs, which no worker here runs either.)
      expect((await explain(email.job.id))[0]).toMatchObject({
        code: "no_runner",
        message:
          "no live worker serving queue default has handler sendEmail (thumbs: handlers resize)",
      });
      // The job the worker has a handler for is not said to lack one.
      expect((await explain(resize.job.id)).map((r) => r.code)).not.toContain("no_runner");
      // A shell worker (or one of an earlier version, which did not say) takes the shell job.
      await store.beatWorker(beat({ name: "old", runs: null }));
      expect((await explain(shellJob.id)).map((r) => r.code)).not.toContain("no_runner");
    });

    it("counts the ready jobs ahead of it, and says when it is next", async () => {
      await store.beatWorker(beat());
      await submit({ priority: 1 });
      await submit({ priority: 5 });
      await submit({ priority: 5, delayMs: 60_000 }); // not ready: not ahead
      const job = await submit({ priority: 5 });
      const facts = await store.waitFacts(job.id);
      expect(facts?.ahead).toBe(2);
      expect(await reasons(job.id)).toEqual(["behind"]);
      const first = await submit({ priority: 1, queue: "solo" });
      expect(await reasons(first.id)).toEqual(["next"]);
    });
  });

  describe("idempotency window", () => {
    it("returns the job for a repeated key while it runs and within the window, then makes a new one", async () => {
      const first = await store.submit(
        normalizeJobInput({ command: ["true"], idempotencyKey: "k" }, clock),
      );
      expect(first.created).toBe(true);
      await run("w1", ok);
      clock += 60_000; // finished exactly at the window's edge: still the same job
      const again = await store.submit(
        normalizeJobInput({ command: ["true"], idempotencyKey: "k" }, clock),
      );
      expect([again.created, again.job.id]).toEqual([false, first.job.id]);
      clock += 1;
      const fresh = await store.submit(
        normalizeJobInput({ command: ["true"], idempotencyKey: "k" }, clock),
      );
      expect(fresh.created).toBe(true);
      expect(fresh.job.id).not.toBe(first.job.id);
      expect((await store.get(first.job.id))?.state).toBe("succeeded");
    });
  });
});
