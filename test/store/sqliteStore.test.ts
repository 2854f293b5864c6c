import { join } from "node:path";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import type { JobInput } from "../../src/core/jobInput.js";
import { normalizeJobInput } from "../../src/core/jobInput.js";
import { SqliteStore } from "../../src/store/sqlite/sqliteStore.js";
import type { ClaimRequest, StoreChange } from "../../src/store/store.js";
import { tempDir } from "../helpers/processes.js";

let clock = 1_000_000;
let dir: ReturnType<typeof tempDir>;
let store: SqliteStore;

const open = () =>
  new SqliteStore({ path: join(dir.path, "baton.db"), now: () => clock, random: () => 0.5 });
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

beforeEach(() => {
  clock = 1_000_000;
  dir = tempDir();
  store = open();
});
afterEach(async () => {
  await store.close();
  dir.remove();
});

describe("SqliteStore claim", () => {
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
    expect(detail?.attempts.map((a) => [a.attempt, a.workerId, a.failure?.reason ?? null])).toEqual(
      [
        [1, "w1", "exit_code"],
        [2, "w2", null],
      ],
    );
  });
});

describe("SqliteStore fencing", () => {
  it("refuses and counts every write of an attempt that lost its lease", async () => {
    const job = await submit({ maxAttempts: 2 });
    const stale = (await store.claim(request()))!;
    clock += 31_000; // lease expired
    expect(await store.reapExpired()).toBe(1);
    clock += 60_000;
    const fresh = (await store.claim(request({ workerId: "w2" })))!;
    expect(fresh.lease.attempt).toBe(2);

    expect(await store.heartbeat(stale.lease, 30_000)).toEqual({ held: false, cancel: false });
    expect(
      await store.appendLogs(stale.lease, [{ stream: "stdout", line: "zombie", ts: 1 }]),
    ).toEqual({
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

describe("SqliteStore heartbeats and the reaper", () => {
  it("extends the lease so the reaper leaves the job alone", async () => {
    const job = await submit();
    const claim = (await store.claim(request()))!;
    clock += 20_000;
    expect(await store.heartbeat(claim.lease, 30_000)).toMatchObject({ held: true, cancel: false });
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

describe("SqliteStore cancel", () => {
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
    expect(await store.heartbeat(claim.lease, 30_000)).toMatchObject({ held: true, cancel: true });
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

describe("SqliteStore release (graceful shutdown)", () => {
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

describe("SqliteStore logs", () => {
  it("numbers lines per job across attempts and pages them", async () => {
    const job = await submit({ maxAttempts: 2 });
    const first = (await store.claim(request()))!;
    await store.appendLogs(first.lease, [
      { stream: "stdout", line: "a", ts: 1 },
      { stream: "stderr", line: "b", ts: 2 },
    ]);
    await store.complete(first.lease, {
      state: "failed",
      exitCode: 1,
      signal: null,
      failure: { reason: "exit_code", message: "x" },
    });
    clock += 60_000;
    const second = (await store.claim(request()))!;
    await store.appendLogs(second.lease, [{ stream: "stdout", line: "c", ts: 3 }]);
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
      (await store.readLogs(job.id, { after: 0, limit: 10, stream: "stderr" })).map((e) => e.line),
    ).toEqual(["b"]);
  });
});

describe("SqliteStore across connections", () => {
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
    const other = open();
    try {
      const changes: StoreChange[] = [];
      const seen = new Promise<void>((resolve) => {
        other.watch((change) => {
          changes.push(change);
          resolve();
        });
      });
      await submit();
      await seen;
      expect(changes[0]).toEqual({ type: "external" });
    } finally {
      await other.close();
    }
  });

  it("never hands one attempt to two connections", async () => {
    const other = open();
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

  it("refuses a database migrated by a newer Baton", async () => {
    const path = join(dir.path, "baton.db");
    const Database = (await import("better-sqlite3")).default;
    const raw = new Database(path);
    raw
      .prepare(
        "INSERT INTO schema_migrations (version, name, applied_at) VALUES (999, 'future', 0)",
      )
      .run();
    raw.close();
    expect(() => open()).toThrow(/schema version 999, newer than this Baton knows/);
  });
});

describe("SqliteStore release of a job being cancelled", () => {
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
