import { readFileSync } from "node:fs";
import { join } from "node:path";
import { pino } from "pino";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import type { JobDetail } from "../../src/core/job.js";
import { type JobInput, normalizeJobInput } from "../../src/core/jobInput.js";
import type { Store } from "../../src/store/store.js";
import { Worker, type WorkerOptions } from "../../src/worker/worker.js";
import { faultyStore } from "../helpers/faultyStore.js";
import { eventually, liveProcessesInGroup, tempDir } from "../helpers/processes.js";
import { backends } from "../helpers/stores.js";

let dir: ReturnType<typeof tempDir>;
let real: Store;
let worker: Worker | null = null;

async function startWorker(store: Store, overrides: Partial<WorkerOptions> = {}): Promise<Worker> {
  worker = new Worker({
    store,
    logger: pino({ level: "silent" }),
    name: "w1",
    queues: null,
    concurrency: 4,
    cpus: 4,
    memoryMb: null,
    stateDir: join(dir.path, "worker"),
    leaseTtlMs: 2_000,
    heartbeatIntervalMs: 200,
    maxHeartbeatFailures: 3,
    killGraceMs: 200,
    flushIntervalMs: 50,
    flushMaxEvents: 50,
    maxBufferedEvents: 10_000,
    pollIntervalMs: 1_000,
    reap: true,
    supervise: false,
    reapIntervalMs: 100,
    ...overrides,
  });
  await worker.start();
  return worker;
}

async function submit(input: JobInput): Promise<string> {
  return (await real.submit(normalizeJobInput(input, Date.now()))).job.id;
}

function finished(id: string, timeoutMs = 10_000): Promise<JobDetail> {
  return eventually(
    async () => {
      const job = await real.get(id);
      return job && ["succeeded", "failed", "cancelled"].includes(job.state) ? job : undefined;
    },
    timeoutMs,
    `job ${id} to finish`,
  );
}

// Every rule runs on each store: SQLite, and PostgreSQL when reachable (always under CI).
describe.each(await backends())("$name store", (backend) => {
  beforeEach(async () => {
    dir = tempDir();
    await backend.setup();
    real = await backend.open();
  });
  afterEach(async () => {
    await worker?.stop(0);
    worker = null;
    await real.close();
    await backend.teardown();
    dir.remove();
  });

  describe("Worker", () => {
    it("gives back, unstarted, a job its claim brings after it began to stop", async () => {
      const ran = join(dir.path, "ran");
      // The real store, whose claims that bring a job wait until the test lets them through.
      let asked = 0;
      let answer = () => {};
      const gate = new Promise<void>((resolve) => (answer = resolve));
      const held = <A extends unknown[], R>(claim: (...args: A) => Promise<R>) => ({
        value: async (...args: A) => {
          const claimed = await claim(...args);
          if (Array.isArray(claimed) ? claimed.length === 0 : claimed === null) return claimed;
          asked++;
          await gate;
          return claimed;
        },
      });
      const slowClaims = Object.create(real, {
        claim: held((...args: Parameters<Store["claim"]>) => real.claim(...args)),
        claimBatch: held((...args: Parameters<Store["claimBatch"]>) => real.claimBatch(...args)),
      }) as Store;
      await startWorker(slowClaims);
      const id = await submit({ command: ["touch", ran] });
      await eventually(() => (asked > 0 ? true : undefined));
      expect((await real.get(id))?.state).toBe("running");
      const stopped = worker!.stop(1_000);
      answer();
      await stopped;
      const job = await real.get(id);
      expect(job).toMatchObject({ state: "pending", attemptsUsed: 0 });
      expect(() => readFileSync(ran)).toThrow(/ENOENT/);
    });

    it("runs a retry on the same worker one attempt after the other, each under its own lease", async () => {
      const record = join(dir.path, "attempts.log");
      await startWorker(real);
      const id = await submit({
        command: [
          "sh",
          "-c",
          'echo "start $BATON_ATTEMPT" >> "$R"; sleep 0.3; echo "end $BATON_ATTEMPT" >> "$R"; exit 1',
        ],
        env: { R: record },
        maxAttempts: 3,
        backoff: { baseMs: 0 },
      });
      const job = await finished(id);
      expect(job.state).toBe("failed");
      expect(job.attempts.map((a) => a.failure?.reason)).toEqual([
        "exit_code",
        "exit_code",
        "exit_code",
      ]);
      expect(readFileSync(record, "utf8").trim().split("\n")).toEqual([
        "start 1",
        "end 1",
        "start 2",
        "end 2",
        "start 3",
        "end 3",
      ]);
      expect(worker?.runningJobs).toBe(0);
    });

    it("keeps a job's own result when its timeout fires while its last output is being written", async () => {
      const { store, faults } = faultyStore(real);
      faults.set("appendLogs", { delayMs: 400 });
      await startWorker(store);
      const id = await submit({ command: ["echo", "hi"], timeoutMs: 150 });
      const job = await finished(id);
      expect(job).toMatchObject({ state: "succeeded", exitCode: 0, failure: null });
      expect((await real.readLogs(id, { after: 0, limit: 10 })).map((e) => e.line)).toEqual(["hi"]);
    });

    it("stops a job whose output cannot be stored for longer than the lease", async () => {
      const { store, faults } = faultyStore(real);
      await startWorker(store, { leaseTtlMs: 1_000, heartbeatIntervalMs: 200 });
      faults.set("appendLogs", { fail: true });
      // Heartbeats still succeed: only the output is refused, yet it must not pile up forever.
      const id = await submit({ command: ["sh", "-c", "while true; do echo x; sleep 0.01; done"] });
      const job = await finished(id);
      expect(job.state).toBe("failed");
      expect(job.failure?.reason).toBe("heartbeat_failed");
      expect(job.failure?.message).toMatch(/output could not be stored for \d/);
    });

    it("aborts a job after consecutive failed heartbeats, before its lease expires", async () => {
      const { store, faults } = faultyStore(real);
      await startWorker(store, {
        leaseTtlMs: 3_000,
        heartbeatIntervalMs: 100,
        maxHeartbeatFailures: 3,
      });
      const id = await submit({ command: ["sh", "-c", "echo $$; exec sleep 30"] });
      const pgid = Number(
        await eventually(async () => (await real.readLogs(id, { after: 0, limit: 1 }))[0]?.line),
      );
      const claimed = await real.get(id);
      // The worker renews leases and records outcomes in batches.
      faults.set("heartbeatBatch", { fail: true });
      faults.set("completeBatch", { fail: true });
      const leaseExpiry = Date.now() + 3_000; // at the latest: the last heartbeat renewed it before now
      await eventually(
        () => (liveProcessesInGroup(pgid).length === 0 ? true : undefined),
        3_000,
        "the job to be stopped",
      );
      expect(Date.now()).toBeLessThan(leaseExpiry);
      expect((await real.get(id))?.state).toBe("running"); // the store could not be told yet
      faults.clear(); // the store is back: the outcome is recorded
      const job = await finished(id);
      expect(claimed?.attempt).toBe(1);
      expect(job.state).toBe("failed");
      expect(job.failure?.reason).toBe("heartbeat_failed");
      expect(job.failure?.message).toMatch(/3 consecutive heartbeats failed/);
    });

    it("stops a job whose lease cannot be renewed in time, whatever the failure count", async () => {
      const { store, faults } = faultyStore(real);
      await startWorker(store, {
        leaseTtlMs: 1_500,
        heartbeatIntervalMs: 100,
        maxHeartbeatFailures: 1_000,
      });
      const id = await submit({ command: ["sh", "-c", "echo $$; exec sleep 30"] });
      const pgid = Number(
        await eventually(async () => (await real.readLogs(id, { after: 0, limit: 1 }))[0]?.line),
      );
      faults.set("heartbeatBatch", { delayMs: 60_000 }); // hangs: no answer, no error
      const deadline = Date.now() + 1_500;
      await eventually(
        () => (liveProcessesInGroup(pgid).length === 0 ? true : undefined),
        3_000,
        "the job to be stopped",
      );
      expect(Date.now()).toBeLessThan(deadline);
      faults.clear();
      const job = await finished(id);
      expect(job.failure?.reason).toBe("heartbeat_failed");
    });

    it("stops a job at once when its lease was lost, and writes nothing for it", async () => {
      await startWorker(real, { reap: false, leaseTtlMs: 2_000, heartbeatIntervalMs: 100 });
      const id = await submit({ command: ["sh", "-c", "echo $$; exec sleep 30"] });
      const pgid = Number(
        await eventually(async () => (await real.readLogs(id, { after: 0, limit: 1 }))[0]?.line),
      );
      // Another process's reaper sees the lease expired (its clock is ahead) and fails the job.
      const ahead = await backend.open({ now: () => Date.now() + 10_000 });
      try {
        // A reaper skips a row another transaction holds (a heartbeat in flight on
        // PostgreSQL) and takes it on its next pass, as the maintenance loop would.
        await eventually(async () => ((await ahead.reapExpired()) === 1 ? true : undefined));
      } finally {
        await ahead.close();
      }
      const reaped = await real.get(id);
      expect(reaped?.failure?.reason).toBe("worker_lost");
      await eventually(
        () => (liveProcessesInGroup(pgid).length === 0 ? true : undefined),
        3_000,
        "the job to be stopped",
      );
      await eventually(() => (worker?.runningJobs === 0 ? true : undefined));
      expect(await real.get(id)).toEqual(reaped); // the stale attempt changed nothing
      expect(real.counters().fencedWrites).toBeGreaterThanOrEqual(1);
    });
  });

  describe("Worker shutdown", () => {
    it("leaves no timers or other handles behind", async () => {
      const timers = () => process.getActiveResourcesInfo().filter((r) => r === "Timeout").length;
      // Counted around the store's life too: a connection pool keeps timers while open.
      await real.close();
      const before = timers();
      real = await backend.open();
      const running = await startWorker(real);
      const id = await submit({ command: ["sh", "-c", "echo hi"], timeoutMs: 60_000 });
      await finished(id);
      await running.stop(1_000);
      worker = null;
      await real.close();
      expect(timers()).toBeLessThanOrEqual(before);
      real = await backend.open();
    });
  });
});
