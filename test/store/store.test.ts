import { afterEach, beforeEach, describe, expect, it } from "vitest";
import type { JobInput } from "../../src/core/jobInput.js";
import { normalizeJobInput } from "../../src/core/jobInput.js";
import { parseOutputLine, plainLine } from "../../src/core/logEvent.js";
import type { ScheduleSpec } from "../../src/core/schedule.js";
import type { ClaimRequest, Store, StoreChange } from "../../src/store/store.js";
import { eventually } from "../helpers/processes.js";
import { backends } from "../helpers/stores.js";

/**
 * The Store conformance suite: every store (SQLite, and PostgreSQL when reachable — always
 * under CI) must pass the same tests, on a fake clock.
 */
let clock = 1_000_000;
let store: Store;
const clockOptions = { now: () => clock, random: () => 0.5 };

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
const ok = { state: "succeeded", exitCode: 0, signal: null } as const;

describe.each(await backends())("$name store", (backend) => {
  beforeEach(async () => {
    clock = 1_000_000;
    await backend.setup();
    store = await backend.open(clockOptions);
  });
  afterEach(async () => {
    await store.close();
    await backend.teardown();
  });

  describe("claim", () => {
    it("takes the highest priority first, then the oldest", async () => {
      const low = await submit({ priority: 9 });
      const first = await submit({ priority: 2 });
      const second = await submit({ priority: 2 });
      const order: string[] = [];
      for (let claim = await store.claim(request()); claim; claim = await store.claim(request())) {
        order.push(claim.job.id);
      }
      expect(order).toEqual([first.id, second.id, low.id]);
    });

    it("does not start a job before its runAt", async () => {
      const later = await submit({ delayMs: 5_000 });
      expect(await store.claim(request())).toBeNull();
      clock += 5_000;
      expect((await store.claim(request()))?.job.id).toBe(later.id);
    });

    it("claims only what fits the free cpus and memory, and only from served queues", async () => {
      const big = await submit({ resources: { cpus: 3 } });
      const hungry = await submit({ resources: { memoryMb: 2_000 } });
      const other = await submit({ queue: "gpu" });
      expect(await store.claim(request({ freeCpus: 2, queues: ["default"] }))).toBeNull();
      expect((await store.claim(request({ freeCpus: 2, queues: ["gpu"] })))?.job.id).toBe(other.id);
      expect((await store.claim(request({ freeCpus: 3, freeMemoryMb: 100 })))?.job.id).toBe(big.id);
      expect((await store.claim(request({ freeMemoryMb: 2_000 })))?.job.id).toBe(hungry.id);
    });

    it("gives each claim the next attempt number and records it", async () => {
      const job = await submit({ maxAttempts: 2 });
      const first = await store.claim(request());
      expect(first?.lease).toEqual({ jobId: job.id, attempt: 1, workerId: "w1" });
      expect(first?.expiresAt).toBe(clock + 30_000);
      const startedAt = clock;
      clock += 1_000;
      await store.complete(first!.lease, {
        state: "failed",
        exitCode: 1,
        signal: null,
        failure: { reason: "exit_code", message: "exited with code 1" },
      });
      clock += 60_000; // past the backoff
      const second = await store.claim(request({ workerId: "w2" }));
      expect(second?.lease.attempt).toBe(2);
      const detail = await store.get(job.id);
      expect(
        detail?.attempts.map((a) => [
          a.attempt,
          a.workerId,
          a.startedAt,
          a.finishedAt,
          a.failure?.reason ?? null,
        ]),
      ).toEqual([
        [1, "w1", startedAt, startedAt + 1_000, "exit_code"],
        [2, "w2", clock, null, null], // running
      ]);
    });

    it("completes an attempt whose row an older Baton wrote when it was claimed", async () => {
      const jobs = [await submit(), await submit()];
      const claims = [(await store.claim(request()))!, (await store.claim(request()))!];
      // Before attempts were written when they end, a claim wrote an unfinished row.
      for (const job of jobs) {
        await backend.exec(`INSERT INTO attempts (job_id, attempt, worker_id, started_at)
          VALUES (${job.id}, 1, 'w1', ${clock})`);
      }
      clock += 1_000;
      expect(await store.complete(claims[0]!.lease, ok)).toMatchObject({ applied: true });
      expect(await store.completeBatch([{ lease: claims[1]!.lease, outcome: ok }])).toEqual([
        { applied: true, state: "succeeded" },
      ]);
      for (const job of jobs) {
        const detail = await store.get(job.id);
        expect(detail?.attempts.map((a) => [a.attempt, a.finishedAt, a.exitCode])).toEqual([
          [1, clock, 0],
        ]);
      }
    });
  });

  describe("fencing", () => {
    it("refuses and counts every write of an attempt that lost its lease", async () => {
      const job = await submit({ maxAttempts: 2 });
      const stale = (await store.claim(request()))!;
      clock += 31_000; // lease expired
      expect(await store.reapExpired()).toBe(1);
      clock += 60_000;
      const fresh = (await store.claim(request({ workerId: "w2" })))!;
      expect(fresh.lease.attempt).toBe(2);

      expect(await store.heartbeat(stale.lease, 30_000)).toEqual({ held: false, cancel: false });
      expect(await store.appendLogs(stale.lease, [plainLine("stdout", "zombie", 1)])).toEqual({
        applied: false,
      });
      const late = await store.complete(stale.lease, ok);
      expect(late.applied).toBe(false);
      expect(store.counters().fencedWrites).toBe(3);

      const current = await store.get(job.id);
      expect(current?.state).toBe("running");
      expect(current?.attempt).toBe(2);
      expect(await store.readLogs(job.id, { after: 0, limit: 10 })).toEqual([]);

      expect((await store.complete(fresh.lease, ok)).applied).toBe(true);
      expect((await store.get(job.id))?.state).toBe("succeeded");
    });

    it("refuses a second completion of the same attempt", async () => {
      await submit();
      const claim = (await store.claim(request()))!;
      expect((await store.complete(claim.lease, ok)).applied).toBe(true);
      expect((await store.complete(claim.lease, ok)).applied).toBe(false);
    });
  });

  describe("heartbeats and the reaper", () => {
    it("extends the lease so the reaper leaves the job alone", async () => {
      const job = await submit();
      const claim = (await store.claim(request()))!;
      clock += 20_000;
      expect(await store.heartbeat(claim.lease, 30_000)).toMatchObject({
        held: true,
        cancel: false,
      });
      clock += 20_000;
      expect(await store.reapExpired()).toBe(0);
      expect((await store.get(job.id))?.state).toBe("running");
    });

    it("fails a shell job whose worker vanished with worker_lost (no silent re-run)", async () => {
      const job = await submit();
      await store.claim(request());
      clock += 30_001;
      expect(await store.reapExpired()).toBe(1);
      expect(await store.reapExpired()).toBe(0); // idempotent
      const reaped = await store.get(job.id);
      expect(reaped?.state).toBe("failed");
      expect(reaped?.failure?.reason).toBe("worker_lost");
      expect(reaped?.failure?.message).toContain("w1");
    });

    it("puts a job with attempts left back to pending after its backoff", async () => {
      const job = await submit({ maxAttempts: 3, backoff: { baseMs: 2_000 } });
      await store.claim(request());
      clock += 30_001;
      await store.reapExpired();
      const retried = await store.get(job.id);
      expect(retried?.state).toBe("pending");
      expect(retried?.runAt).toBe(clock + 2_000);
    });
  });

  describe("cancel", () => {
    it("cancels a pending job at once", async () => {
      const job = await submit();
      const cancelled = await store.cancel(job.id);
      expect(cancelled?.state).toBe("cancelled");
      expect(cancelled?.failure?.reason).toBe("cancelled");
      expect(await store.claim(request())).toBeNull();
    });

    it("asks the worker of a running job, through heartbeat and cancelRequests", async () => {
      const job = await submit();
      const claim = (await store.claim(request()))!;
      expect((await store.cancel(job.id))?.state).toBe("running");
      expect(await store.cancelRequests("w1")).toEqual([claim.lease]);
      expect(await store.heartbeat(claim.lease, 30_000)).toMatchObject({
        held: true,
        cancel: true,
      });
      await store.complete(claim.lease, { state: "cancelled", exitCode: null, signal: "SIGTERM" });
      expect((await store.get(job.id))?.state).toBe("cancelled");
    });

    it("leaves a finished job unchanged", async () => {
      const job = await submit();
      const claim = (await store.claim(request()))!;
      await store.complete(claim.lease, ok);
      const before = await store.get(job.id);
      expect(await store.cancel(job.id)).toEqual(before);
      expect(await store.cancel("12345")).toBeNull();
      expect(await store.cancel("not-an-id")).toBeNull();
    });
  });

  describe("release (graceful shutdown)", () => {
    it("gives the job back without spending an attempt", async () => {
      const job = await submit({ maxAttempts: 1 });
      const claim = (await store.claim(request()))!;
      const released = await store.release(claim.lease, "worker shut down");
      expect(released.applied).toBe(true);
      expect(released.job?.state).toBe("pending");
      const again = (await store.claim(request({ workerId: "w2" })))!;
      expect(again.lease.attempt).toBe(2);
      await store.complete(again.lease, {
        state: "failed",
        exitCode: 1,
        signal: null,
        failure: { reason: "exit_code", message: "x" },
      });
      // maxAttempts 1 and one counted attempt: failed, not retried.
      const final = await store.get(job.id);
      expect(final?.state).toBe("failed");
      expect(final?.attempts[0]?.failure?.reason).toBe("shutdown");
    });
  });

  describe("logs", () => {
    it("numbers lines per job across attempts and pages them", async () => {
      const job = await submit({ maxAttempts: 2 });
      const first = (await store.claim(request()))!;
      await store.appendLogs(first.lease, [
        plainLine("stdout", "a", 1),
        plainLine("stderr", "b", 2),
      ]);
      await store.complete(first.lease, {
        state: "failed",
        exitCode: 1,
        signal: null,
        failure: { reason: "exit_code", message: "x" },
      });
      clock += 60_000;
      const second = (await store.claim(request()))!;
      await store.appendLogs(second.lease, [plainLine("stdout", "c", 3)]);
      const all = await store.readLogs(job.id, { after: 0, limit: 10 });
      expect(all.map((e) => [e.seq, e.attempt, e.stream, e.line])).toEqual([
        [1, 1, "stdout", "a"],
        [2, 1, "stderr", "b"],
        [3, 2, "stdout", "c"],
      ]);
      expect((await store.readLogs(job.id, { after: 1, limit: 1 })).map((e) => e.line)).toEqual([
        "b",
      ]);
      expect(
        (await store.readLogs(job.id, { after: 0, limit: 10, attempt: 2 })).map((e) => e.line),
      ).toEqual(["c"]);
      expect(
        (await store.readLogs(job.id, { after: 0, limit: 10, stream: "stderr" })).map(
          (e) => e.line,
        ),
      ).toEqual(["b"]);
    });
  });

  describe("across connections", () => {
    it("returns the same job for a repeated idempotency key", async () => {
      const first = await store.submit(
        normalizeJobInput({ command: ["true"], idempotencyKey: "k" }, clock),
      );
      const again = await store.submit(
        normalizeJobInput({ command: ["false"], idempotencyKey: "k" }, clock),
      );
      expect(first.created).toBe(true);
      expect(again).toMatchObject({ created: false, job: { id: first.job.id, command: ["true"] } });
    });

    it("tells a listener on another connection that something changed", async () => {
      const other = await backend.open(clockOptions);
      try {
        const changes: StoreChange[] = [];
        other.watch((change) => changes.push(change));
        // SQLite can only say "something changed"; PostgreSQL says what (NOTIFY). A listener
        // may start after the first submit: submit until one is heard.
        const heard = (c: StoreChange) =>
          backend.name === "sqlite" ? c.type === "external" : c.type === "job_available";
        await eventually(async () => {
          await submit();
          await new Promise((resolve) => setTimeout(resolve, 50));
          return changes.some(heard) ? true : undefined;
        }, 5_000);
      } finally {
        await other.close();
      }
    });

    it("tells its own listeners of a change it made once, not again from the database", async () => {
      const other = await backend.open(clockOptions);
      try {
        const changes: StoreChange[] = [];
        store.watch((change) => changes.push(change));
        const heard = (test: (c: StoreChange) => boolean) =>
          eventually(async () => (changes.some(test) ? true : undefined), 5_000);
        // PostgreSQL: "external" once its LISTEN took effect.
        if (backend.name === "postgres") await heard((c) => c.type === "external");
        const job = await submit();
        // A change by another connection, committed after the submit, is heard after
        // anything the submit's own commit sent (NOTIFYs arrive in commit order).
        await other.cancel(job.id);
        await heard((c) =>
          backend.name === "sqlite"
            ? c.type === "external"
            : c.type === "job_finished" && c.jobId === job.id,
        );
        expect(changes.filter((c) => c.type === "job_available")).toHaveLength(1);
      } finally {
        await other.close();
      }
    });

    it("never hands one attempt to two connections", async () => {
      const other = await backend.open(clockOptions);
      try {
        for (let i = 0; i < 50; i++) await submit();
        const claims = await Promise.all(
          Array.from({ length: 60 }, (_, i) =>
            (i % 2 === 0 ? store : other).claim(request({ workerId: `w${i % 2}` })),
          ),
        );
        const taken = claims.filter((c) => c !== null).map((c) => c.job.id);
        expect(taken).toHaveLength(50);
        expect(new Set(taken).size).toBe(50);
      } finally {
        await other.close();
      }
    });

    it("lets workers naming a handler claim the handler jobs an older Baton queued", async () => {
      await store.close();
      await backend.teardown();
      await backend.setup();
      await backend.migrateUpTo("the handler of handler jobs");
      const row = (handler: string) =>
        `('default', 'handler', '{"command":null,"script":null,"handler":"${handler}",` +
        `"payload":{"for":"${handler}"},"env":{},"cwd":null}', '{}', 0, 0, 3, 1000, 60000, 0, ` +
        `'pending', 0, 1000)`;
      await backend.exec(`INSERT INTO jobs (queue, kind, spec, labels, priority, cpus,
        max_attempts, backoff_base_ms, backoff_max_ms, run_at, state, created_at, max_log_bytes)
        VALUES ${row("resize")}, ${row("email")}`);
      store = await backend.open(clockOptions);
      const resizer = request({ kinds: ["handler"], handlers: ["resize"] });
      const claim = await store.claim(resizer);
      expect(claim?.job).toMatchObject({ handler: "resize", payload: { for: "resize" } });
      expect(await store.claim(resizer)).toBeNull();
      const mailer = await store.claim(request({ kinds: ["handler"], handlers: ["email"] }));
      expect(mailer?.job.handler).toBe("email");
    });

    it("lets them claim the handler jobs an older Baton queues after the migration", async () => {
      // An older Baton still running knows nothing of the handler column and leaves it empty.
      const { job } = await store.submit(
        normalizeJobInput({ handler: "resize", payload: { n: 1 } }, clock),
      );
      await backend.exec(`UPDATE jobs SET handler = NULL WHERE id = ${job.id}`);
      expect(await store.claim(request({ kinds: ["handler"], handlers: ["email"] }))).toBeNull();
      const claim = await store.claim(request({ kinds: ["handler"], handlers: ["resize"] }));
      expect(claim?.job).toMatchObject({ id: job.id, handler: "resize", payload: { n: 1 } });
    });

    it("refuses a database migrated by a newer Baton", async () => {
      await backend.markNewerSchema();
      await expect(backend.open(clockOptions)).rejects.toThrow(
        /version 999, newer than this Baton knows/,
      );
    });
  });

  describe("release of a job being cancelled", () => {
    it("ends it cancelled instead of putting it back in line", async () => {
      const job = await submit();
      const claim = (await store.claim(request()))!;
      await store.cancel(job.id);
      const released = await store.release(claim.lease, "worker shut down");
      expect(released.applied).toBe(true);
      expect(released.job?.state).toBe("cancelled");
      expect(await store.claim(request())).toBeNull();
    });
  });

  describe("output events", () => {
    it("keeps kinds, data and cut marks, and the job's latest progress", async () => {
      const job = await submit();
      const claim = (await store.claim(request()))!;
      await store.appendLogs(claim.lease, [
        ...parseOutputLine("stdout", "::progress 10", 1),
        ...parseOutputLine("stdout", '::event {"step":"fetch"}', 2),
        { ...plainLine("stdout", "piece", 3), cut: true },
        ...parseOutputLine("stdout", "::progress 55", 4),
        ...parseOutputLine("stderr", "::event {bad", 5),
      ]);
      const events = await store.readLogs(job.id, { after: 0, limit: 10 });
      expect(events.map((e) => [e.stream, e.kind, e.data, e.cut])).toEqual([
        ["stdout", "progress", { percent: 10 }, false],
        ["stdout", "event", { step: "fetch" }, false],
        ["stdout", "line", null, true],
        ["stdout", "progress", { percent: 55 }, false],
        ["stderr", "line", null, false],
        ["system", "warning", null, false],
      ]);
      expect((await store.get(job.id))?.progress).toBe(55);
    });

    it("stores output up to the job's cap, then marks the truncation once and counts the rest", async () => {
      const job = await submit({ maxLogBytes: 10 });
      const claim = (await store.claim(request()))!;
      const lines = ["1234", "5678", "90", "x", "yy"].map((l, i) => plainLine("stdout", l, i));
      await store.appendLogs(claim.lease, lines.slice(0, 3));
      await store.appendLogs(claim.lease, lines.slice(3));
      const events = await store.readLogs(job.id, { after: 0, limit: 10 });
      expect(events.map((e) => [e.kind, e.line.slice(0, 22)])).toEqual([
        ["line", "1234"],
        ["line", "5678"],
        ["line", "90"],
        ["truncated", "output reached this jo"],
      ]);
      expect((await store.get(job.id))?.output).toEqual({
        storedBytes: 10,
        droppedLines: 2,
        droppedBytes: 3,
      });
      // The job itself is not affected.
      expect((await store.complete(claim.lease, ok)).job?.state).toBe("succeeded");
    });

    it("removes the output of jobs finished before the retention limit, a batch at a time", async () => {
      const old = await Promise.all([submit(), submit(), submit()]);
      for (let i = 0; i < old.length; i++) {
        const claim = (await store.claim(request()))!;
        await store.appendLogs(claim.lease, [plainLine("stdout", "old", 1)]);
        await store.complete(claim.lease, ok);
      }
      clock += 10_000;
      const recent = await submit();
      const claim = (await store.claim(request()))!;
      await store.appendLogs(claim.lease, [plainLine("stdout", "recent", 1)]);
      await store.complete(claim.lease, ok);

      expect(await store.pruneLogs(clock - 5_000, 2)).toBe(2);
      expect(await store.pruneLogs(clock - 5_000, 2)).toBe(1);
      expect(await store.pruneLogs(clock - 5_000, 2)).toBe(0);
      for (const job of old)
        expect(await store.readLogs(job.id, { after: 0, limit: 9 })).toEqual([]);
      expect((await store.readLogs(recent.id, { after: 0, limit: 9 })).map((e) => e.line)).toEqual([
        "recent",
      ]);
    });
  });
  describe("batch submit", () => {
    it("stores every job in order, keeping idempotency keys, in one transaction", async () => {
      const existing = await submit({ idempotencyKey: "once" });
      const answers = await store.submitBatch(
        [
          { command: ["a"] },
          { command: ["b"], idempotencyKey: "once" },
          { command: ["c"], priority: 1 },
        ].map((input) => normalizeJobInput(input, clock)),
      );
      expect(answers.map((a) => [a.job.command?.[0], a.created])).toEqual([
        ["a", true],
        ["true", false],
        ["c", true],
      ]);
      expect(answers[1]?.job.id).toBe(existing.id);
      expect((await store.list({ limit: 10 })).jobs).toHaveLength(3);
    });

    it("answers every job of a large batch as stored, keyed ones and repeated keys among them", async () => {
      // More jobs than one INSERT takes, keys in between (some repeated within the batch).
      // Every field set on some, so that each is checked against the stored row.
      const full: JobInput = {
        queue: "full",
        priority: 3,
        resources: { cpus: 0.5, memoryMb: 64 },
        timeoutMs: 5_000,
        maxAttempts: 5,
        backoff: { baseMs: 10, maxMs: 100 },
        delayMs: 1_000,
        concurrencyKey: "k",
        concurrencyLimit: 2,
        labels: { team: "a" },
        maxLogBytes: 1_024,
      };
      const inputs: JobInput[] = Array.from({ length: 250 }, (_, i) => ({
        ...(i % 7 === 0 ? full : {}),
        ...(i % 11 === 0
          ? { handler: "h", payload: { i, nested: [1, { a: null }] } }
          : { command: [`job-${i}`], ...(i % 7 === 0 ? { env: { A: "1" }, cwd: "/tmp" } : {}) }),
        ...(i % 60 === 0 ? { idempotencyKey: `key-${i % 120}` } : {}),
      }));
      const answers = await store.submitBatch(
        inputs.map((input) => normalizeJobInput(input, clock)),
      );
      expect(answers).toHaveLength(250);
      const firstWithKey = new Map<string, string>();
      for (const [i, { job, created }] of answers.entries()) {
        const key = inputs[i]?.idempotencyKey;
        const earlier = key === undefined ? undefined : firstWithKey.get(key);
        expect(created).toBe(earlier === undefined);
        if (earlier !== undefined) expect(job.id).toBe(earlier);
        else {
          expect(job.command ?? job.payload).toEqual(inputs[i]?.command ?? inputs[i]?.payload);
          if (key !== undefined) firstWithKey.set(key, job.id);
        }
        expect(await store.get(job.id)).toEqual(job);
      }
      expect((await store.list({ limit: 300 })).jobs).toHaveLength(247);
    });

    it("stores nothing when one entry cannot be stored", async () => {
      const good = normalizeJobInput({ command: ["ok"] }, clock);
      const bad = { ...good, queue: null as unknown as string }; // violates NOT NULL
      await expect(store.submitBatch([good, good, bad])).rejects.toThrow();
      expect((await store.list({ limit: 10 })).jobs).toEqual([]);
    });
  });
  describe("queues and concurrency keys", () => {
    it("claims nothing from a paused queue until it is resumed", async () => {
      const job = await submit({ queue: "q" });
      await store.updateQueue("q", { paused: true });
      expect(await store.claim(request())).toBeNull();
      await store.updateQueue("q", { paused: false });
      expect((await store.claim(request()))?.job.id).toBe(job.id);
    });

    it("holds a queue's running limit, and lists queues with their counts", async () => {
      await store.updateQueue("q", { maxRunning: 1 });
      const first = await submit({ queue: "q", priority: 1 });
      await submit({ queue: "q", priority: 1 });
      const other = await submit({ queue: "other", priority: 9 });
      const claim = (await store.claim(request()))!;
      expect(claim.job.id).toBe(first.id);
      // The second job of q waits for the first; the lower-priority job elsewhere may run.
      expect((await store.claim(request()))?.job.id).toBe(other.id);
      expect(await store.claim(request())).toBeNull();
      expect(await store.listQueues()).toEqual([
        { name: "other", paused: false, maxRunning: null, running: 1, pending: 0 },
        { name: "q", paused: false, maxRunning: 1, running: 1, pending: 1 },
      ]);
      await store.complete(claim.lease, ok);
      expect((await store.claim(request()))?.job.queue).toBe("q");
    });

    it("lists every queue with settings or jobs, finished ones not counted", async () => {
      await store.updateQueue("configured", { paused: true });
      const done = await submit({ queue: "b-done" });
      const claim = (await store.claim(request()))!;
      expect(claim.job.id).toBe(done.id);
      await store.complete(claim.lease, ok);
      await submit({ queue: "a-mixed" });
      await submit({ queue: "a-mixed", delayMs: 60_000 });
      await submit({ queue: "c-pending" });
      await store.claim(request());
      expect(await store.listQueues()).toEqual([
        { name: "a-mixed", paused: false, maxRunning: null, running: 1, pending: 1 },
        { name: "b-done", paused: false, maxRunning: null, running: 0, pending: 0 },
        { name: "c-pending", paused: false, maxRunning: null, running: 0, pending: 1 },
        { name: "configured", paused: true, maxRunning: null, running: 0, pending: 0 },
      ]);
    });

    it("runs at most the limit of jobs sharing a concurrency key", async () => {
      const a1 = await submit({ concurrencyKey: "customer-a" });
      await submit({ concurrencyKey: "customer-a" });
      const b1 = await submit({ concurrencyKey: "customer-b", concurrencyLimit: 2 });
      const b2 = await submit({ concurrencyKey: "customer-b", concurrencyLimit: 2 });
      const claimed: string[] = [];
      for (let c = await store.claim(request()); c; c = await store.claim(request())) {
        claimed.push(c.job.id);
      }
      expect(claimed).toEqual([a1.id, b1.id, b2.id]);
    });

    it("never exceeds a limit when claims race from several connections", async () => {
      const other = await backend.open(clockOptions);
      try {
        await store.updateQueue("limited", { maxRunning: 2 });
        for (let i = 0; i < 15; i++) {
          await submit({ queue: "limited" });
          await submit({ concurrencyKey: "k" });
        }
        const claims = await Promise.all(
          Array.from({ length: 30 }, (_, i) =>
            (i % 2 === 0 ? store : other).claim(request({ workerId: `w${i % 2}` })),
          ),
        );
        const taken = claims.filter((c) => c !== null).map((c) => c.job);
        expect(taken.filter((job) => job.queue === "limited")).toHaveLength(2);
        expect(taken.filter((job) => job.concurrencyKey === "k")).toHaveLength(1);
      } finally {
        await other.close();
      }
    });
  });

  describe("schedules", () => {
    const MINUTE = 60_000;
    // The fake clock starts at 00:16:40 UTC: an every-minute schedule first fires at 00:17.
    const FIRST_MINUTE = 1_020_000;
    const put = (name: string, cron: string, overrides: Partial<ScheduleSpec> = {}) =>
      store.putSchedule({
        name,
        cron,
        timezone: "UTC",
        missed: "skip",
        job: { command: ["true"] },
        ...overrides,
      });
    const jobs = async () => (await store.list({ limit: 1_000 })).jobs;

    it("creates, replaces, lists, pauses and removes schedules", async () => {
      const created = await put("nightly", "* * * * *", { job: { command: ["a"], priority: 2 } });
      expect(created).toEqual({
        created: true,
        schedule: {
          name: "nightly",
          cron: "* * * * *",
          timezone: "UTC",
          missed: "skip",
          paused: false,
          job: { command: ["a"], priority: 2 },
          nextFireAt: FIRST_MINUTE,
          lastFiredAt: null,
          lastJobId: null,
          createdAt: clock,
        },
      });
      clock += 1_000;
      // Same expression: the next firing stays; another: it is computed again.
      const same = await put("nightly", "* * * * *", { job: { command: ["b"] } });
      expect(same).toMatchObject({ created: false, schedule: { nextFireAt: FIRST_MINUTE } });
      const replaced = await put("nightly", "*/5 * * * *", { missed: "run-once" });
      expect(replaced.created).toBe(false);
      expect(replaced.schedule).toMatchObject({
        missed: "run-once",
        nextFireAt: 20 * MINUTE,
        createdAt: 1_000_000,
      });
      await put("backup", "0 3 * * *", { timezone: "Europe/Paris" });
      expect((await store.listSchedules()).map((s) => s.name)).toEqual(["backup", "nightly"]);
      expect((await store.getSchedule("backup"))?.nextFireAt).toBe(Date.UTC(1970, 0, 1, 2));

      expect((await store.pauseSchedule("nightly", true))?.paused).toBe(true);
      // Replacing keeps the schedule paused.
      expect((await put("nightly", "* * * * *")).schedule.paused).toBe(true);
      expect(await store.pauseSchedule("nope", true)).toBeNull();
      expect(await store.removeSchedule("nightly")).toBe(true);
      expect(await store.removeSchedule("nightly")).toBe(false);
      expect(await store.getSchedule("nightly")).toBeNull();
    });

    it("fires each due firing once, as a labelled job keyed by its time", async () => {
      await put("tick", "* * * * *", { job: { command: ["echo", "hi"], labels: { team: "a" } } });
      expect(await store.fireSchedules()).toEqual([]);
      clock = FIRST_MINUTE;
      const [firing, ...more] = await store.fireSchedules();
      expect(more).toEqual([]);
      expect(firing).toMatchObject({ schedule: "tick", at: FIRST_MINUTE, missed: false });
      const job = await store.get(firing!.jobId!);
      expect(job).toMatchObject({
        command: ["echo", "hi"],
        labels: { team: "a", schedule: "tick" },
        idempotencyKey: "schedule:tick:1970-01-01T00:17:00.000Z",
        runAt: FIRST_MINUTE,
        state: "pending",
      });
      expect(await store.fireSchedules()).toEqual([]);
      clock += 59_000;
      expect(await store.fireSchedules()).toEqual([]);
      expect(await store.getSchedule("tick")).toMatchObject({
        nextFireAt: FIRST_MINUTE + MINUTE,
        lastFiredAt: FIRST_MINUTE,
        lastJobId: job!.id,
      });
      // Late, but within the grace: simply fired.
      clock = FIRST_MINUTE + MINUTE + 30_000;
      expect(await store.fireSchedules()).toMatchObject([
        { at: FIRST_MINUTE + MINUTE, missed: false },
      ]);
      expect(await jobs()).toHaveLength(2);
    });

    it("catches up each firing within the grace, once", async () => {
      await put("fast", "* * * * * *");
      clock += 10_000;
      const firings = await store.fireSchedules();
      expect(firings.map((f) => f.at)).toEqual(
        Array.from({ length: 10 }, (_, i) => 1_001_000 + i * 1_000),
      );
      const keys = (await jobs()).map((job) => job.idempotencyKey);
      expect(new Set(keys).size).toBe(10);
    });

    it("creates one job per firing when two connections fire at once", async () => {
      const other = await backend.open(clockOptions);
      try {
        for (const name of ["a", "b", "c"]) await put(name, "* * * * * *");
        for (let round = 0; round < 15; round++) {
          clock += 700 + (round % 3) * 900;
          await Promise.all([store.fireSchedules(), other.fireSchedules(), store.fireSchedules()]);
        }
        const expected = Math.floor((clock - 1_000_000) / 1_000);
        const all = await jobs();
        for (const name of ["a", "b", "c"]) {
          const keys = all.filter((j) => j.labels.schedule === name).map((j) => j.idempotencyKey);
          expect(keys).toHaveLength(expected);
          expect(new Set(keys).size).toBe(expected);
        }
      } finally {
        await other.close();
      }
    });

    it("skips missed firings, or runs them once, then goes on from now", async () => {
      await put("skipper", "* * * * *");
      await put("once", "* * * * *", { missed: "run-once" });
      clock += 60 * MINUTE + 5_000; // everything was down for an hour
      const firings = await store.fireSchedules();
      expect(firings).toHaveLength(2);
      expect(firings.find((f) => f.schedule === "skipper")).toMatchObject({
        missed: true,
        jobId: null,
      });
      const once = firings.find((f) => f.schedule === "once");
      expect(once).toMatchObject({ at: FIRST_MINUTE, missed: true });
      expect(await jobs()).toHaveLength(1);
      expect((await store.get(once!.jobId!))?.labels.schedule).toBe("once");
      const nextMinute = Math.ceil(clock / MINUTE) * MINUTE;
      for (const s of await store.listSchedules()) expect(s.nextFireAt).toBe(nextMinute);
      clock = nextMinute;
      const next = await store.fireSchedules();
      expect(next.map((f) => [f.schedule, f.missed])).toEqual(
        expect.arrayContaining([
          ["skipper", false],
          ["once", false],
        ]),
      );
      expect(await jobs()).toHaveLength(3);
    });

    it("reports a schedule whose job cannot be made, and fires the others", async () => {
      await put("broken", "* * * * *", { job: {} }); // no command: only the API checks it
      await put("fine", "* * * * *");
      clock = FIRST_MINUTE;
      const firings = await store.fireSchedules();
      expect(firings.find((f) => f.schedule === "broken")).toMatchObject({
        jobId: null,
        error: expect.stringMatching(/^job: command: /) as unknown,
      });
      expect(firings.find((f) => f.schedule === "fine")?.jobId).not.toBeNull();
      expect((await store.getSchedule("broken"))?.nextFireAt).toBe(FIRST_MINUTE + MINUTE);
    });

    it("fires nothing while paused; on resume, the missed policy decides, no burst", async () => {
      await put("skipper", "* * * * * *");
      await put("once", "* * * * * *", { missed: "run-once" });
      await store.pauseSchedule("skipper", true);
      await store.pauseSchedule("once", true);
      clock += 10_000; // within the grace, yet paused over
      expect(await store.fireSchedules()).toEqual([]);
      const skipper = await store.pauseSchedule("skipper", false);
      expect(skipper?.paused).toBe(false);
      expect(skipper?.nextFireAt).toBe(clock + 1_000);
      expect(await jobs()).toHaveLength(0);
      const once = await store.pauseSchedule("once", false);
      expect(once?.nextFireAt).toBe(clock + 1_000);
      const [job, ...rest] = await jobs();
      expect(rest).toEqual([]);
      expect(job?.labels.schedule).toBe("once");
      expect(once?.lastJobId).toBe(job?.id);
      expect(await store.fireSchedules()).toEqual([]);
      // Resuming a running schedule changes nothing.
      await store.pauseSchedule("once", false);
      clock += 1_000;
      expect(await store.fireSchedules()).toHaveLength(2);
    });
  });
});
