import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { normalizeJobInput } from "../../src/core/jobInput.js";
import { createLogger } from "../../src/logger.js";
import type { Store, WorkerStore } from "../../src/store/store.js";
import { HandlerWorker, type HandlerWorkerOptions } from "../../src/worker/handlerWorker.js";
import { InlineRunner } from "../../src/worker/handlerRunner.js";
import { eventually } from "../helpers/processes.js";
import { backends } from "../helpers/stores.js";

/** A worker "w1" of every queue, polling every 50 ms, that reaps nothing. */
const options = (
  store: WorkerStore,
  runner: InlineRunner,
  concurrency: number,
  batchSize: number,
): HandlerWorkerOptions => ({
  store,
  runner,
  logger: createLogger("silent"),
  name: "w1",
  queues: null,
  concurrency,
  leaseTtlMs: 30_000,
  heartbeatIntervalMs: 10_000,
  maxHeartbeatFailures: 3,
  killGraceMs: 1_000,
  pollIntervalMs: 50,
  flushIntervalMs: 100,
  reap: false,
  reapIntervalMs: 10_000,
  batchSize,
});

for (const backend of await backends()) {
  describe(`handler worker on ${backend.name}`, () => {
    let store: Store;
    let worker: HandlerWorker | null = null;
    /** Lets held-back outcome writes through (see the test). */
    let open = () => {};

    beforeEach(async () => {
      await backend.setup();
      store = await backend.open();
    });

    /**
     * The real store, whose `nth` claim that brings jobs is answered only once `open` is
     * called (by the test, or by afterEach should an expectation fail first).
     */
    const holdClaim = (nth: number) => {
      let claims = 0;
      const gate = new Promise<void>((resolve) => (open = resolve));
      const slowClaims: WorkerStore = Object.create(store, {
        claimBatch: {
          value: async (...args: Parameters<Store["claimBatch"]>) => {
            const claimed = await store.claimBatch(...args);
            if (claimed.length > 0 && ++claims === nth) await gate;
            return claimed;
          },
        },
      }) as WorkerStore;
      return { store: slowClaims, asked: () => claims >= nth };
    };

    /** Two registry beats that started after now have both read an order given before. */
    const beatsAfterNow = async () => {
      let since = Date.now();
      for (let beat = 0; beat < 2; beat++) {
        since = await eventually(async () => {
          const [info] = (await store.listWorkers()).filter((w) => w.name === "w1");
          return info && info.lastHeartbeatAt > since ? info.lastHeartbeatAt : undefined;
        });
      }
    };

    afterEach(async () => {
      open();
      await worker?.stop(0);
      worker = null;
      await store.close();
      await backend.teardown();
    });

    it("claims nothing more while twice its concurrency in outcomes wait to be stored", async () => {
      const jobs = 40;
      const concurrency = 4;
      await store.submitBatch(
        Array.from({ length: jobs }, (_, i) =>
          normalizeJobInput({ handler: "count", payload: i }, Date.now()),
        ),
      );
      // The real store, whose outcome writes wait until the test opens the gate.
      const gate = new Promise<void>((resolve) => (open = resolve));
      const slowOutcomes: WorkerStore = Object.create(store, {
        completeBatch: {
          value: async (...args: Parameters<Store["completeBatch"]>) => {
            await gate;
            return store.completeBatch(...args);
          },
        },
      }) as WorkerStore;
      let ran = 0;
      worker = new HandlerWorker(
        options(slowOutcomes, new InlineRunner({ count: () => ++ran }), concurrency, concurrency),
      );
      await worker.start();
      // Its handlers return at once: their slots free up, their outcomes wait.
      await eventually(() => (ran >= 2 * concurrency ? true : undefined));
      // Four polls (each asks for a claim round) pass; none may start another job. Without
      // the bound, all 40 jobs would have run within the first few milliseconds.
      await new Promise((resolve) => setTimeout(resolve, 200));
      // Claims stop once twice the concurrency waits; the last one may take a batch more.
      expect(ran).toBeLessThan(3 * concurrency);
      const running = await store.list({ state: "running", limit: 100 });
      expect(running.jobs).toHaveLength(ran);

      open();
      await eventually(async () => {
        const page = await store.list({ state: "succeeded", limit: 100 });
        return page.jobs.length === jobs ? true : undefined;
      });
      expect(ran).toBe(jobs);
    });

    it("asks for its next batch before this one's handlers start, within its concurrency", async () => {
      const jobs = 12;
      await store.submitBatch(
        Array.from({ length: jobs }, (_, i) =>
          normalizeJobInput({ handler: "work", payload: i }, Date.now()),
        ),
      );
      const events: string[] = [];
      const recorded: WorkerStore = Object.create(store, {
        claimBatch: {
          value: (...args: Parameters<Store["claimBatch"]>) => {
            events.push(`claim ${args[1]}`);
            return store.claimBatch(...args);
          },
        },
      }) as WorkerStore;
      let running = 0;
      let most = 0;
      // The first handlers hold until four run at once (or afterEach lets them go), so the
      // check does not race a sleep against the second claim on a loaded machine.
      const fourRunning = new Promise<void>((resolve) => (open = resolve));
      const runner = new InlineRunner({
        work: async () => {
          events.push("start");
          most = Math.max(most, ++running);
          if (running === 4) open();
          await fourRunning;
          await new Promise((resolve) => setImmediate(resolve));
          running--;
        },
      });
      worker = new HandlerWorker(options(recorded, runner, 4, 2));
      await worker.start();
      await eventually(async () => {
        const page = await store.list({ state: "succeeded", limit: 100 });
        return page.jobs.length === jobs ? true : undefined;
      });
      // Two of the four slots per claim: the second batch is asked for before the first starts.
      expect(events.slice(0, 3)).toEqual(["claim 2", "claim 2", "start"]);
      expect(most).toBe(4);
    });

    it("gives back, unstarted, the jobs a claim brings after it began to stop", async () => {
      await store.submitBatch(
        Array.from({ length: 6 }, (_, i) =>
          normalizeJobInput({ handler: "work", payload: i }, Date.now()),
        ),
      );
      // The second claim's answer is held back, as by a slow network.
      const held = holdClaim(2);
      const ran: number[] = [];
      const runner = new InlineRunner({ work: (payload: number) => void ran.push(payload) });
      worker = new HandlerWorker(options(held.store, runner, 4, 2));
      await worker.start();
      await eventually(() => (held.asked() ? true : undefined));
      const stopped = worker.stop(1_000);
      open();
      await stopped;
      // The second claim's two jobs were claimed in the store but never run: pending again,
      // their attempt not spent.
      expect(ran).toHaveLength(2);
      const pending = await store.list({ state: "pending", limit: 100 });
      expect(pending.jobs).toHaveLength(4);
      expect(pending.jobs.every((job) => job.attemptsUsed === 0)).toBe(true);
      expect((await store.list({ state: "running", limit: 100 })).jobs).toHaveLength(0);
    });

    it("is drained only once a claim on its way is answered and given back", async () => {
      await store.submitBatch(
        Array.from({ length: 2 }, (_, i) =>
          normalizeJobInput({ handler: "work", payload: i }, Date.now()),
        ),
      );
      const held = holdClaim(1);
      let ran = 0;
      const runner = new InlineRunner({ work: () => void ran++ });
      worker = new HandlerWorker({ ...options(held.store, runner, 4, 4), heartbeatIntervalMs: 20 });
      await worker.start();
      await eventually(() => (held.asked() ? true : undefined));
      await store.updateWorker("w1", { drain: true });
      let drained = false;
      void worker.drained.then(() => (drained = true));
      await beatsAfterNow();
      // It holds no job, but two are on their way to it.
      expect(drained).toBe(false);
      open();
      await worker.drained;
      expect(ran).toBe(0);
      const pending = await store.list({ state: "pending", limit: 100 });
      expect(pending.jobs).toHaveLength(2);
    });

    it("starts nothing when stopped while it starts", async () => {
      let ran = 0;
      // Its first report to the registry is slow: the stop is over before it is answered.
      let beats = 0;
      const slowStart: WorkerStore = Object.create(store, {
        beatWorker: {
          value: async (...args: Parameters<Store["beatWorker"]>) => {
            if (++beats === 1) await new Promise((resolve) => setTimeout(resolve, 100));
            return store.beatWorker(...args);
          },
        },
      }) as WorkerStore;
      const runner = new InlineRunner({ work: () => void ran++ });
      worker = new HandlerWorker(options(slowStart, runner, 2, 2));
      const started = worker.start();
      await worker.stop(0);
      await started;
      await store.submit(normalizeJobInput({ handler: "work", payload: 1 }, Date.now()));
      // Four polls (and the submit's notification) pass with no claim: nothing was left
      // running, neither timers nor the store's change feed.
      await new Promise((resolve) => setTimeout(resolve, 200));
      expect(ran).toBe(0);
      expect((await store.list({ state: "pending", limit: 10 })).jobs).toHaveLength(1);
    });

    describe("with polls too rare to help (each job must be claimed on the store's news)", () => {
      const rarely = (runner: InlineRunner, concurrency: number) => ({
        ...options(store, runner, concurrency, concurrency),
        pollIntervalMs: 600_000,
      });
      const submit = (input: Parameters<typeof normalizeJobInput>[0]) =>
        store.submit(normalizeJobInput(input, Date.now())).then(({ job }) => job);
      const stateOf = async (id: string) => (await store.get(id))?.state;

      it("claims once for each job that comes, not again as each ends, when it has no more", async () => {
        let claims = 0;
        const counted: WorkerStore = Object.create(store, {
          claimBatch: {
            value: (...args: Parameters<Store["claimBatch"]>) => {
              claims++;
              return store.claimBatch(...args);
            },
          },
        }) as WorkerStore;
        worker = new HandlerWorker({
          ...rarely(new InlineRunner({ noop: () => null }), 4),
          store: counted,
        });
        let listening = backend.name === "sqlite";
        store.watch((change) => {
          if (change.type === "external") listening = true;
        });
        await worker.start();
        // PostgreSQL: "external" once its LISTEN took effect (before it, a store tells its
        // listeners of its own changes itself, and its NOTIFYs tell them again).
        await eventually(() => (listening ? true : undefined));
        const jobs = 5;
        for (let i = 0; i < jobs; i++) {
          const job = await submit({ handler: "noop" });
          await eventually(async () =>
            (await stateOf(job.id)) === "succeeded" ? true : undefined,
          );
        }
        // One for each job, and those of its start (the first, and PostgreSQL's "listening").
        // A claim each time a job ended, here or anywhere, made it three or more a job.
        expect(claims).toBeLessThanOrEqual(jobs + 2);
      });

      it("claims a job whose news met a failed claim as soon as a slot frees", async () => {
        let failNext = false;
        const flaky: WorkerStore = Object.create(store, {
          claimBatch: {
            value: async (...args: Parameters<Store["claimBatch"]>) => {
              if (!failNext) return store.claimBatch(...args);
              failNext = false;
              throw new Error("connection reset");
            },
          },
        }) as WorkerStore;
        const waiting: Array<() => void> = [];
        const runner = new InlineRunner({
          hold: () => new Promise<void>((resolve) => waiting.push(resolve)),
          quick: () => null,
        });
        worker = new HandlerWorker({ ...rarely(runner, 2), store: flaky });
        await worker.start();
        const first = await submit({ handler: "hold" });
        // Its claim found nothing more: the worker has no reason to claim as it ends.
        await eventually(() => (waiting.length === 1 ? true : undefined));
        failNext = true;
        const second = await submit({ handler: "quick" });
        await eventually(async () => (failNext ? undefined : true));
        // The second's news was spent on a failed claim; the first's end must look again.
        waiting.shift()?.();
        await eventually(async () =>
          (await stateOf(second.id)) === "succeeded" ? true : undefined,
        );
        expect(await stateOf(first.id)).toBe("succeeded");
      });

      it("claims at once a job that needs the CPUs of one that ends", async () => {
        const waiting: Array<() => void> = [];
        const runner = new InlineRunner({
          hold: () => new Promise<void>((resolve) => waiting.push(resolve)),
        });
        worker = new HandlerWorker({ ...rarely(runner, 2), cpus: 1 });
        // Both pending at the one claim: it takes the first and has no CPU for the second.
        const input = normalizeJobInput({ handler: "hold", resources: { cpus: 1 } }, Date.now());
        const [first, second] = (await store.submitBatch([input, input])).map(({ job }) => job.id);
        await worker.start();
        await eventually(() => (waiting.length === 1 ? true : undefined));
        expect(await stateOf(second!)).toBe("pending");
        waiting.shift()?.();
        // Its slot and CPU free as the handler returns, its outcome is written after.
        await eventually(() => (waiting.length === 1 ? true : undefined));
        expect(await stateOf(second!)).toBe("running");
        await eventually(async () => ((await stateOf(first!)) === "succeeded" ? true : undefined));
        waiting.shift()?.();
      });

      it("claims at once a job held back by its concurrency key when the one holding it ends", async () => {
        const waiting: Array<() => void> = [];
        const runner = new InlineRunner({
          hold: () => new Promise<void>((resolve) => waiting.push(resolve)),
        });
        worker = new HandlerWorker(rarely(runner, 2));
        await worker.start();
        const keyed = { handler: "hold", concurrencyKey: "k" };
        const first = await submit(keyed);
        const second = await submit(keyed);
        await eventually(() => (waiting.length === 1 ? true : undefined));
        expect(await stateOf(second.id)).toBe("pending");
        // The worker has nothing else it could run; the key's release brings the second.
        waiting.shift()?.();
        await eventually(() => (waiting.length === 1 ? true : undefined));
        expect(await stateOf(first.id)).toBe("succeeded");
        expect(await stateOf(second.id)).toBe("running");
        waiting.shift()?.();
      });
    });

    it("follows an operator's orders: fewer slots, then a drain that starts nothing more", async () => {
      await store.submitBatch(
        Array.from({ length: 6 }, (_, i) =>
          normalizeJobInput({ handler: "hold", payload: i }, Date.now()),
        ),
      );
      const waiting: Array<() => void> = [];
      const runner = new InlineRunner({
        hold: () => new Promise<void>((resolve) => waiting.push(resolve)),
      });
      // Orders are read on each registry beat, which comes with every heartbeat.
      worker = new HandlerWorker({ ...options(store, runner, 2, 2), heartbeatIntervalMs: 20 });
      await worker.start();
      await eventually(() => (waiting.length === 2 ? true : undefined));

      await store.updateWorker("w1", { concurrency: 1 });
      await beatsAfterNow();
      waiting.shift()?.();
      waiting.shift()?.();
      // One slot now: the two that finished make room for one job, not two.
      await eventually(() => (waiting.length === 1 ? true : undefined));
      expect(worker.running).toBe(1);

      await store.updateWorker("w1", { drain: true });
      let drained = false;
      void worker.drained.then(() => (drained = true));
      await beatsAfterNow();
      // It knows of the drain, and still runs a handler.
      expect(drained).toBe(false);
      waiting.shift()?.();
      await worker.drained;
      // Three ran and three wait: a drained worker starts nothing more.
      const pending = await store.list({ state: "pending", limit: 100 });
      expect(pending.jobs).toHaveLength(3);
      expect(worker.running).toBe(0);
    });
  });
}
