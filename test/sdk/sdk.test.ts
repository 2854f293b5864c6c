import { afterEach, beforeEach, describe, expect, it } from "vitest";
import type { JobStopped } from "../../src/sdk/index.js";
import {
  type Client,
  createClient,
  defineHandlers,
  JobFailedError,
  NonRetryableError,
  Worker,
  type WorkerEvents,
} from "../../src/sdk/index.js";
import type { Store } from "../../src/store/store.js";
import { eventually } from "../helpers/processes.js";
import { backends } from "../helpers/stores.js";

/** Resolves with the next `name` event's argument. */
function next<K extends keyof WorkerEvents>(worker: Worker, name: K): Promise<WorkerEvents[K][0]> {
  return new Promise((resolve) => {
    worker.once(name, ((event: WorkerEvents[K][0]) => resolve(event)) as never);
  });
}

const gates = new Map<string, () => void>();

const handlers = defineHandlers({
  async greet(payload: { name: string }, ctx) {
    ctx.log(`hello ${payload.name}`);
    ctx.progress(50);
    ctx.emit({ step: "greeted" });
    return { greeting: `Hello, ${payload.name}!`, attempt: ctx.attempt };
  },
  async flaky(_payload: null, ctx) {
    throw new Error(`flaky failure on attempt ${ctx.attempt}`);
  },
  async refuse() {
    throw new NonRetryableError("the address is on the suppression list");
  },
  /** Waits until its signal aborts, and reports why. */
  async wait(payload: { gate: string }, ctx) {
    await new Promise<void>((resolve) => {
      gates.set(payload.gate, resolve);
      ctx.signal.addEventListener("abort", () => resolve(), { once: true });
    });
    if (ctx.signal.aborted) throw ctx.signal.reason as JobStopped;
    return "opened";
  },
  /** Never looks at its signal: only its gate ends it. */
  async deaf(payload: { gate: string }) {
    await new Promise<void>((resolve) => gates.set(payload.gate, resolve));
    return "opened";
  },
});

for (const backend of await backends()) {
  describe(`SDK on ${backend.name}`, () => {
    let client: Client<typeof handlers>;
    let worker: Worker<typeof handlers>;
    let store: Store;
    let connection: { store: string; schema?: string };

    beforeEach(async () => {
      gates.clear();
      await backend.setup();
      const { store: url, args } = backend.url();
      connection = args[1] ? { store: url, schema: args[1] } : { store: url };
      client = await createClient<typeof handlers>(connection);
      worker = new Worker({
        ...connection,
        handlers,
        concurrency: 4,
        leaseTtl: 2_000,
        heartbeatInterval: 200,
        killGrace: 300,
        logger: false,
      });
      store = await backend.open();
    });

    afterEach(async () => {
      await worker.stop({ grace: 0 });
      await client.close();
      await store.close();
      await backend.teardown();
    });

    it("runs a typed handler: result, log lines, progress and events, and the typed events", async () => {
      const started = next(worker, "started");
      const succeeded = next(worker, "succeeded");
      await worker.start();
      const job = await client.enqueue("greet", { name: "Ada" });
      expect(job.created).toBe(true);
      expect(job.job).toMatchObject({
        kind: "handler",
        handler: "greet",
        payload: { name: "Ada" },
      });
      const result = await client.waitFor(job, { timeout: "10s" });
      expect(result).toEqual({ greeting: "Hello, Ada!", attempt: 1 });
      expect((await started).job.id).toBe(job.id);
      expect(await succeeded).toMatchObject({ attempt: 1, result });
      const stored = await client.getJob(job.id);
      expect(stored).toMatchObject({ state: "succeeded", result, progress: 50, maxAttempts: 3 });
      const events = await store.readLogs(job.id, { after: 0, limit: 100 });
      expect(events.map((event) => [event.kind, event.line])).toEqual([
        ["line", "hello Ada"],
        ["progress", "::progress 50"],
        ["event", '::event {"step":"greeted"}'],
      ]);
    });

    it("retries a throwing handler by policy (3 attempts), then fails with its message", async () => {
      const failures: Array<{ attempt: number; retrying: boolean }> = [];
      worker.on("failed", (event) => failures.push(event));
      await worker.start();
      const job = await client.enqueue("flaky", null, { backoff: 10 });
      const error = await client.waitFor(job, { timeout: "20s" }).catch((e: unknown) => e);
      expect(error).toBeInstanceOf(JobFailedError);
      expect((error as JobFailedError).job.failure).toEqual({
        reason: "handler_error",
        message: "flaky failure on attempt 3",
      });
      expect((error as JobFailedError).job.attempts).toHaveLength(3);
      await eventually(() => failures.length === 3 || undefined);
      expect(failures.map((f) => [f.attempt, f.retrying])).toEqual([
        [1, true],
        [2, true],
        [3, false],
      ]);
    });

    it("fails at once on NonRetryableError", async () => {
      await worker.start();
      const job = await client.enqueue("refuse", null);
      const error = (await client.waitFor(job).catch((e: unknown) => e)) as JobFailedError;
      expect(error.job.state).toBe("failed");
      expect(error.job.attempts).toHaveLength(1);
      expect(error.job.failure?.message).toBe("the address is on the suppression list");
    });

    it("aborts the handler's signal on cancel and on timeout, naming the cause", async () => {
      await worker.start();
      const cancelled = await client.enqueue("wait", { gate: "c" });
      await eventually(() => gates.get("c"));
      await client.cancel(cancelled.id);
      const error = (await client.waitFor(cancelled).catch((e: unknown) => e)) as JobFailedError;
      expect(error.job.state).toBe("cancelled");

      const slow = await client.enqueue("wait", { gate: "t" }, { timeout: 200, maxAttempts: 1 });
      const failed = (await client.waitFor(slow).catch((e: unknown) => e)) as JobFailedError;
      expect(failed.job.failure).toEqual({ reason: "timeout", message: "timed out after 200ms" });
    });

    it("abandons a handler that ignores its stop once the kill grace is over", async () => {
      await worker.start();
      const job = await client.enqueue("deaf", { gate: "d" }, { timeout: 200, maxAttempts: 1 });
      const failed = (await client.waitFor(job).catch((e: unknown) => e)) as JobFailedError;
      expect(failed.job.failure).toEqual({
        reason: "timeout",
        message:
          "timed out after 200ms; the handler did not return within 300 ms of being stopped " +
          "and was abandoned",
      });
      gates.get("d")?.();
    });

    it("stop() gives an unfinished job back without spending an attempt", async () => {
      const released = next(worker, "released");
      await worker.start();
      const job = await client.enqueue("wait", { gate: "s" });
      await eventually(() => gates.get("s"));
      await worker.stop({ grace: 50 });
      expect((await released).job.id).toBe(job.id);
      expect(await client.getJob(job.id)).toMatchObject({ state: "pending", attempt: 1 });
      gates.clear();
      const again = new Worker({ ...connection, handlers, logger: false });
      await again.start();
      await eventually(() => gates.get("s") !== undefined || undefined);
      gates.get("s")?.();
      expect(await client.waitFor(job, { timeout: "10s" })).toBe("opened");
      await again.stop();
    });

    it("enqueues a batch, and returns the live job for a repeated idempotency key", async () => {
      const batch = await client.enqueueBatch([
        { handler: "greet", payload: { name: "a" } },
        { handler: "greet", payload: { name: "b" }, options: { priority: 1 } },
      ]);
      expect(batch.map((entry) => entry.created)).toEqual([true, true]);
      const first = await client.enqueue("greet", { name: "x" }, { idempotencyKey: "k1" });
      const second = await client.enqueue("greet", { name: "y" }, { idempotencyKey: "k1" });
      expect([second.id, second.created]).toEqual([first.id, false]);
      await worker.start();
      const results = await Promise.all(batch.map((entry) => client.waitFor(entry)));
      expect(results.map((r) => (r as { greeting: string }).greeting)).toEqual([
        "Hello, a!",
        "Hello, b!",
      ]);
      const page = await client.listJobs({ state: "succeeded" });
      expect(page.jobs.length).toBeGreaterThanOrEqual(2);
    });

    it("rejects bad input with an error naming the field, and stores nothing", async () => {
      await expect(client.enqueue("greet", { name: "a" }, { priority: 42 })).rejects.toThrow(
        /priority/,
      );
      await expect(client.enqueue("greet", { name: "a" }, { timeout: "soon" })).rejects.toThrow(
        /timeout: must be a duration/,
      );
      const cyclic: { name: string; self?: unknown } = { name: "c" };
      cyclic.self = cyclic;
      await expect(client.enqueue("greet", cyclic)).rejects.toThrow(/payload: must be JSON/);
      expect((await client.listJobs()).jobs).toEqual([]);
    });

    it("lets timers run while it works through a backlog of handlers that return at once", async () => {
      const jobs = 2_000;
      await client.enqueueBatch(
        Array.from({ length: jobs }, (_, i) => ({
          handler: "greet" as const,
          payload: { name: `${i}` },
        })),
      );
      let ran = 0;
      let allRan = () => {};
      const done = new Promise<void>((resolve) => (allRan = resolve));
      const busy = new Worker({
        ...connection,
        handlers: { greet: () => (++ran === jobs ? allRan() : null) },
        concurrency: 50,
        batchSize: 50,
        logger: false,
      });
      // What the handlers had done at each tick of a timer (heartbeats are timers too).
      const seen: number[] = [];
      const ticks = setInterval(() => seen.push(ran), 1);
      try {
        await busy.start();
        await done;
      } finally {
        clearInterval(ticks);
        await busy.stop();
      }
      expect(await client.listJobs({ state: "pending" })).toMatchObject({ jobs: [] });
      expect(seen.some((count) => count > 0 && count < jobs)).toBe(true);
    });

    it("claims only jobs for handlers it has: others wait for a worker that has them", async () => {
      const untyped = await createClient(connection);
      const unknown = await untyped.enqueue("resizeImage", { width: 10 }, { priority: 1 });
      await worker.start();
      const known = await client.enqueue("greet", { name: "k" }, { priority: 9 });
      await client.waitFor(known, { timeout: "10s" });
      expect(await client.getJob(unknown.id)).toMatchObject({ state: "pending", attempt: 0 });
      await untyped.close();
    });
  });
}
