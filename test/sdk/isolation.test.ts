/**
 * Handlers that block: in a worker thread they cannot starve the heartbeats and are stopped
 * hard on timeout; inline, the lease they lose is explained by its cause. Runs the compiled
 * SDK (`npm test` builds first), as a thread cannot load TypeScript.
 */
import { Worker as Thread } from "node:worker_threads";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { createClient, type JobFailedError, Worker } from "../../dist/sdk/index.js";
import { eventually, tempDir } from "../helpers/processes.js";

const HANDLERS = new URL("../fixtures/handlers.mjs", import.meta.url);

describe("handler isolation", () => {
  let dir: ReturnType<typeof tempDir>;
  let store: string;
  let worker: Worker | null = null;

  beforeEach(() => {
    dir = tempDir();
    store = `sqlite:${dir.path}/app.db`;
  });

  afterEach(async () => {
    await worker?.stop({ grace: 0 });
    worker = null;
    dir.remove();
  });

  it('keeps the lease of a handler that blocks its thread for longer than the lease (isolation: "thread")', async () => {
    const client = await createClient({ store });
    worker = new Worker({
      store,
      handlers: HANDLERS,
      isolation: "thread",
      leaseTtl: 1_000,
      heartbeatInterval: 150,
      killGrace: 200,
      logger: false,
    });
    const lost: string[] = [];
    worker.on("leaseLost", (event) => lost.push(event.message));
    await worker.start();
    const job = await client.enqueue("spin", { ms: 2_500 });
    expect(await client.waitFor(job, { timeout: "20s" })).toEqual({ spun: 2_500 });
    const done = await client.getJob(job.id);
    expect(done?.attempts).toHaveLength(1);
    expect(lost).toEqual([]);
    await client.close();
  });

  it("stops a handler that never returns when its timeout passes, by terminating its thread", async () => {
    const client = await createClient({ store });
    worker = new Worker({
      store,
      handlers: HANDLERS,
      isolation: "thread",
      concurrency: 2,
      killGrace: 200,
      logger: false,
    });
    await worker.start();
    const stuck = await client.enqueue("forever", null, { timeout: 300, maxAttempts: 1 });
    const error = (await client
      .waitFor(stuck, { timeout: "20s" })
      .catch((e: unknown) => e)) as JobFailedError;
    expect(error.job.failure?.reason).toBe("timeout");
    expect(error.job.failure?.message).toMatch(
      /timed out after 300ms; the handler did not return within 200 ms of being stopped, so its thread was terminated/,
    );
    // The worker goes on with fresh threads.
    const next = await client.enqueue("double", { n: 21 });
    expect(await client.waitFor(next, { timeout: "20s" })).toEqual({ n: 42 });
    const refused = await client.enqueue("refuse", null);
    const final = (await client.waitFor(refused).catch((e: unknown) => e)) as JobFailedError;
    expect(final.job.attempts).toHaveLength(1);
    await client.close();
  });

  it("names a blocked event loop as the cause when an inline handler loses its lease", async () => {
    const client = await createClient({ store });
    // Another thread reaps expired leases while this event loop is blocked, as another
    // worker or server would.
    const reaper = new Thread(
      `const { parentPort, workerData } = require("node:worker_threads");
       import(workerData.openStore).then(async ({ openStore }) => {
         const store = await openStore(workerData.store);
         const timer = setInterval(() => void store.reapExpired(), 50);
         parentPort.on("message", async () => { clearInterval(timer); await store.close(); process.exit(0); });
       });`,
      {
        eval: true,
        workerData: {
          store,
          openStore: new URL("../../dist/store/openStore.js", import.meta.url).href,
        },
      },
    );
    worker = new Worker({
      store,
      handlers: HANDLERS,
      leaseTtl: 600,
      heartbeatInterval: 150,
      killGrace: 200,
      logger: false,
    });
    const lost: string[] = [];
    worker.on("leaseLost", (event) => lost.push(event.message));
    await worker.start();
    const job = await client.enqueue("spin", { ms: 1_500 }, { maxAttempts: 1 });
    await eventually(() => lost[0], 20_000, "the leaseLost event");
    expect(lost[0]).toMatch(
      /^lease lost: the event loop was blocked for \d+(\.\d+)?m?s \(running: spin \(job 1\)\), so no heartbeat could renew the 600ms lease/,
    );
    expect(lost[0]).toMatch(/isolation: "thread"/);
    const failed = await client.getJob(job.id);
    expect(failed?.failure?.reason).toBe("worker_lost");
    reaper.postMessage("stop");
    await new Promise((resolve) => reaper.once("exit", resolve));
    await client.close();
  });
});
