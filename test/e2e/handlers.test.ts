import { fileURLToPath } from "node:url";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { JobJson } from "../../src/api/jobJson.js";
import {
  createClient,
  type JobFailedError,
  NonRetryableError,
  Worker,
} from "../../src/sdk/index.js";
import {
  baton,
  type Daemon,
  eventually,
  startServerDaemon,
  startWorkerDaemon,
  tempDir,
} from "../helpers/processes.js";

const HANDLERS = fileURLToPath(new URL("../fixtures/handlers.mjs", import.meta.url));
const dir = tempDir();
const store = `sqlite:${dir.path}/baton.db`;
let server: Daemon;
let worker: Daemon;
let env: Record<string, string>;

beforeAll(async () => {
  const started = await startServerDaemon(store);
  server = started.daemon;
  env = { BATON_SERVER: started.url };
  worker = await startWorkerDaemon(store, "h1", `${dir.path}/h1`, [
    "--handlers",
    HANDLERS,
    "--isolation",
    "thread",
  ]);
});

afterAll(async () => {
  await worker.stop();
  await server.stop();
  dir.remove();
});

describe("baton worker --handlers", () => {
  it("runs a module's handler jobs submitted from the CLI; the result and log are stored", async () => {
    const submitted = await baton(["submit", "--handler", "double", "--payload", '{"n":21}'], {
      env,
    });
    expect(submitted.stderr).toBe("");
    const id = submitted.stdout.trim();
    const job = await eventually(async () => {
      const shown = await baton(["jobs", "show", id, "--json"], { env });
      const current = JSON.parse(shown.stdout) as JobJson;
      return current.state === "succeeded" ? current : undefined;
    });
    expect(job).toMatchObject({ kind: "handler", handler: "double", state: "succeeded" });
    expect(job.result).toEqual({ n: 42 });
    expect(job.attempts?.[0]?.workerId).toBe("h1");
    const logs = await baton(["logs", id], { env });
    expect(logs.stdout).toBe("doubling 21\n");
  });

  it("serves an SDK client that goes through the server", async () => {
    const client = await createClient({ server: env.BATON_SERVER ?? "" });
    const job = await client.enqueue("double", { n: 5 });
    expect(await client.waitFor(job, { timeout: "20s" })).toEqual({ n: 10 });
    await client.close();
  });

  it("answers each of many concurrent enqueues through the server; a bad one fails alone", async () => {
    // Enqueues made at once go to the server together; the server refuses a batch with a
    // bad entry as a whole, so each is sent again alone and every caller gets its own answer.
    const client = await createClient({ server: env.BATON_SERVER ?? "" });
    const options = (i: number) =>
      i === 7 ? { priority: 42 } : i >= 10 && i <= 11 ? { idempotencyKey: "twice" } : {};
    const answers = await Promise.allSettled(
      Array.from({ length: 20 }, (_, i) => client.enqueue("double", { n: i }, options(i))),
    );
    const refused = answers[7];
    expect(refused?.status === "rejected" && String(refused.reason)).toMatch(/^ApiError: priority/);
    const enqueued = answers.flatMap((answer) =>
      answer.status === "fulfilled" ? [answer.value] : [],
    );
    expect(enqueued).toHaveLength(19);
    const [first, second] = enqueued.filter((job) => job.job.idempotencyKey === "twice");
    expect(second?.id).toBe(first?.id);
    expect([first?.created, second?.created]).toEqual([true, false]);
    expect(new Set(enqueued.map((job) => job.id)).size).toBe(18);
    // Each caller's job ran with its own payload; the second with the key got the first's job.
    const results = await Promise.all(
      enqueued.map((job) => client.waitFor(job, { timeout: "20s" })),
    );
    const payloads = [0, 1, 2, 3, 4, 5, 6, 8, 9, 10, 10, 12, 13, 14, 15, 16, 17, 18, 19];
    expect(results).toEqual(payloads.map((n) => ({ n: 2 * n })));
    await client.close();
  });

  it("says a shell job waits because the only worker runs handlers, and lists what it runs", async () => {
    const submitted = await baton(["submit", "--queue", "only-handlers", "--", "true"], { env });
    const id = submitted.stdout.trim();
    const explained = await baton(["jobs", "explain", id], { env });
    expect(explained.stdout).toMatch(
      /no live worker serving queue only-handlers runs shell jobs \(h1: handlers [a-z, ]*double/,
    );
    const workers = await baton(["workers"], { env });
    const row = workers.stdout.split("\n").find((line) => line.startsWith("h1 "));
    expect(row).toMatch(/ \* +[a-z,]*double[a-z,]* /); // every queue; its handlers, no "shell"
    await baton(["cancel", id], { env });
  });

  it("refuses a module that is missing or exports no handlers, with exit 2", async () => {
    const missing = await baton(["worker", "--store", store, "--handlers", `${dir.path}/nope.mjs`]);
    expect(missing.code).toBe(2);
    expect(missing.stderr).toMatch(/--handlers .*nope\.mjs: cannot load handlers from/);
    const bad = await baton(["submit", "--handler", "double", "--payload", "{n:1}"], { env });
    expect(bad.code).toBe(2);
    expect(bad.stderr).toMatch(/--payload.*not JSON/);
  });
});

describe("an SDK worker through the server", () => {
  it("runs handlers with no store access: results, and NonRetryableError fails at once", async () => {
    const server = env.BATON_SERVER ?? "";
    const client = await createClient({ server });
    const worker = new Worker({
      server,
      handlers: {
        triple: (payload: { n: number }) => ({ n: payload.n * 3 }),
        decline: () => {
          throw new NonRetryableError("declined for good");
        },
      },
      logger: false,
    });
    await worker.start();
    try {
      const job = await client.enqueue("triple", { n: 7 });
      expect(await client.waitFor(job, { timeout: "20s" })).toEqual({ n: 21 });
      const declined = await client.enqueue("decline", null);
      const error = (await client.waitFor(declined).catch((e: unknown) => e)) as JobFailedError;
      expect(error.job.failure).toEqual({ reason: "handler_error", message: "declined for good" });
      expect(error.job.attempts).toHaveLength(1);
    } finally {
      await worker.stop();
      await client.close();
    }
  });
});
