import { writeFileSync } from "node:fs";
import { type AddressInfo, connect, createServer, type Socket } from "node:net";
import { fileURLToPath } from "node:url";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { JobJson } from "../../src/api/jobJson.js";
import { RemoteWorkerStore } from "../../src/client/remoteWorkerStore.js";
import type { Job, JobDetail } from "../../src/core/job.js";
import { normalizeJobInput } from "../../src/core/jobInput.js";
import { createLogger } from "../../src/logger.js";
import { openStore } from "../../src/store/openStore.js";
import type { ClaimJson } from "../../src/api/workerSchemas.js";
import {
  baton,
  Daemon,
  eventually,
  liveProcessesInGroup,
  startServerDaemon,
  tempDir,
} from "../helpers/processes.js";

// Workers that reach Baton only through its HTTP server (`baton worker --server`).
const HANDLERS = fileURLToPath(new URL("../fixtures/handlers.mjs", import.meta.url));
const dir = tempDir();
const dbPath = join(dir.path, "baton.db");
const TOKEN = "s3cret-token";
// A lease long enough for a worker to be restarted within it on a slow machine.
const LEASE = ["--lease-ttl", "6s", "--heartbeat-interval", "500ms", "--kill-grace", "500ms"];
const daemons: Daemon[] = [];
let url = "";
let env: Record<string, string> = {};

beforeAll(async () => {
  const started = await startServerDaemon(`sqlite:${dbPath}`, [
    "--token",
    TOKEN,
    "--reap-interval",
    "200ms",
  ]);
  daemons.push(started.daemon);
  url = started.url;
  env = { BATON_SERVER: url, BATON_TOKEN: TOKEN };
});
afterAll(async () => {
  await Promise.all(daemons.map((d) => d.stop("SIGKILL")));
  dir.remove();
});

/** A remote worker serving `queue` (each test has its own), its state under the test dir. */
async function startRemoteWorker(
  name: string,
  queue: string,
  lease: readonly string[] = LEASE,
): Promise<Daemon> {
  const worker = new Daemon([
    "worker",
    "--server",
    url,
    "--token",
    TOKEN,
    "--name",
    name,
    "--state-dir",
    join(dir.path, name),
    "--queues",
    queue,
    ...lease,
  ]);
  daemons.push(worker);
  await worker.waitForLog(/worker running/);
  return worker;
}

async function submit(queue: string, script: string): Promise<string> {
  const result = await baton(["submit", "--queue", queue, "--", "sh", "-c", script], { env });
  expect(result.stderr).toBe("");
  return result.stdout.trim();
}

async function job(id: string): Promise<JobJson> {
  return (await call("GET", `/v1/jobs/${id}`)).json() as Promise<JobJson>;
}

function finished(id: string, timeoutMs = 15_000): Promise<JobJson> {
  return eventually(
    async () => {
      const current = await job(id);
      return current.state === "running" || current.state === "pending" ? undefined : current;
    },
    timeoutMs,
    `job ${id} to finish`,
  );
}

function call(method: string, path: string, body?: unknown, token = TOKEN): Promise<Response> {
  return fetch(`${url}${path}`, {
    method,
    headers: {
      authorization: `Bearer ${token}`,
      ...(body === undefined ? {} : { "content-type": "application/json" }),
    },
    body: body === undefined ? null : JSON.stringify(body),
  });
}

describe("baton worker --server", () => {
  it("runs jobs submitted through the CLI; their output is stored and `baton logs` shows it", async () => {
    await startRemoteWorker("r1", "rq1");
    const ids = await Promise.all(
      [1, 2, 3].map((n) => submit("rq1", `echo out ${n}; echo "::progress 50"; echo err ${n} >&2`)),
    );
    for (const [index, id] of ids.entries()) {
      const done = await finished(id);
      expect(done).toMatchObject({ state: "succeeded", exitCode: 0, workerId: "r1", progress: 50 });
      const logs = await baton(["logs", id], { env });
      expect(logs.stdout).toBe(`out ${index + 1}\n::progress 50\n`);
      expect(logs.stderr).toBe(`err ${index + 1}\n`);
    }
    // It reports to the registry through the server too.
    const workers = await baton(["workers", "ls", "--json"], { env });
    const listed = JSON.parse(workers.stdout) as { name: string; state: string }[];
    expect(listed.find((w) => w.name === "r1")?.state).toBe("running");
  });

  it("stops a running job when it is cancelled: the cancel reaches the worker through the server", async () => {
    // Heartbeats too rare to carry the cancel in time: only the change stream can.
    await startRemoteWorker("r2", "rq2", ["--lease-ttl", "60s", "--heartbeat-interval", "20s"]);
    const id = await submit("rq2", "echo started; exec sleep 60");
    await eventually(async () => ((await job(id)).state === "running" ? true : undefined));
    await eventually(async () => {
      const logs = await baton(["logs", id], { env });
      return logs.stdout === "started\n" ? true : undefined;
    });
    const cancelledAt = Date.now();
    const cancel = await baton(["cancel", id], { env });
    expect(cancel.code).toBe(0);
    const done = await finished(id, 10_000);
    expect(done.state).toBe("cancelled");
    expect(done.signal).toBe("SIGTERM");
    // Woken by the server's change stream, not by the next heartbeat.
    expect(Date.now() - cancelledAt).toBeLessThan(5_000);
  });

  it("adopts its running job after a kill -9 and a restart, as a store worker does", async () => {
    const w1 = await startRemoteWorker("r3", "rq3");
    const id = await submit(
      "rq3",
      'echo $$; i=1; while [ ! -e "$BATON_WORKDIR/../../go" ] || [ $i -le 20 ]; do echo "line $i"; i=$((i+1)); sleep 0.02; done; exit 7',
    );
    const pgid = Number(
      await eventually(async () => {
        const logs = await baton(["logs", id], { env });
        return logs.stdout.split("\n")[0] || undefined;
      }),
    );
    w1.child.kill("SIGKILL");
    await w1.exited;
    await eventually(() => (liveProcessesInGroup(pgid).length > 0 ? true : undefined));

    const again = await startRemoteWorker("r3", "rq3");
    await again.waitForLog(/adopting a job/);
    writeFileSync(join(dir.path, "r3", "go"), "");
    const done = await finished(id, 20_000);
    expect([done.state, done.exitCode, done.failure?.reason]).toEqual(["failed", 7, "exit_code"]);
    expect(done.attempts).toHaveLength(1);
    const logs = await baton(["logs", id], { env });
    const out = logs.stdout.split("\n").slice(0, -1);
    const count = out.length - 1;
    expect(count).toBeGreaterThanOrEqual(20);
    // Every line once, in order, across the restart.
    expect(out).toEqual([
      String(pgid),
      ...Array.from({ length: count }, (_, i) => `line ${i + 1}`),
    ]);
  });

  it("exits with a clear message for a wrong or missing token, or with --store as well", async () => {
    const base = ["worker", "--server", url, "--state-dir", join(dir.path, "r4")];
    const wrong = new Daemon([...base, "--name", "r4", "--token", "not-it"]);
    daemons.push(wrong);
    expect(await wrong.exited).toEqual({ code: 1, signal: null });
    expect(wrong.stderr).toMatch(
      /the Baton server at http:\S+ refused this worker's token .*--token or BATON_TOKEN/,
    );

    const none = new Daemon([...base, "--name", "r4"], { BATON_TOKEN: "" });
    daemons.push(none);
    expect(await none.exited).toEqual({ code: 1, signal: null });
    expect(none.stderr).toMatch(/requires a token/);

    const both = await baton([...base, "--store", "sqlite:/nowhere.db"], { env });
    expect(both.code).toBe(2);
    expect(both.stderr).toMatch(/--store and --server cannot be used together/);
  });

  it("answers bad claim bodies with 400 problem+json naming the field", async () => {
    const good = {
      workerId: "probe",
      queues: ["nothing-here"],
      kinds: ["shell"],
      freeCpus: 1,
      freeMemoryMb: null,
      leaseTtlMs: 5_000,
    };
    const cases: Array<[object, string]> = [
      [{ ...good, freeCpus: "2" }, "freeCpus"],
      [{ ...good, surprise: true }, "surprise"],
      [{ ...good, kinds: ["python"] }, "kinds[0]"],
      [{ ...good, waitMs: 3_600_000 }, "waitMs"],
      [{ ...good, max: 0 }, "max"],
      [{ ...good, leaseTtlMs: undefined }, "leaseTtlMs"],
    ];
    for (const [body, field] of cases) {
      const response = await call("POST", "/v1/worker/claim", body);
      expect(response.status).toBe(400);
      expect(response.headers.get("content-type")).toMatch(/^application\/problem\+json/);
      const problem = (await response.json()) as { code: string; errors: { field: string }[] };
      expect(problem.code).toBe("validation_failed");
      expect(problem.errors.map((e) => e.field)).toContain(field);
    }
    const unauthorized = await call("POST", "/v1/worker/claim", good, "wrong");
    expect(unauthorized.status).toBe(401);
    // A good one with nothing to claim answers empty.
    const empty = await call("POST", "/v1/worker/claim", good);
    expect(await empty.json()).toEqual({ claims: [] });
  });

  it("long-polls a claim until a job comes; fencing refusals are answers, not errors", async () => {
    const request = {
      workerId: "poller",
      queues: ["lp"],
      kinds: ["shell"],
      freeCpus: 1,
      freeMemoryMb: null,
      leaseTtlMs: 10_000,
      waitMs: 10_000,
    };
    const waiting = call("POST", "/v1/worker/claim", request);
    await new Promise((resolve) => setTimeout(resolve, 300));
    const id = await submit("lp", "true");
    const submittedAt = Date.now();
    const { claims } = (await (await waiting).json()) as { claims: ClaimJson[] };
    expect(Date.now() - submittedAt).toBeLessThan(3_000);
    expect(claims).toHaveLength(1);
    const [claim] = claims;
    expect(claim?.job).toMatchObject({ id, state: "running", attempt: 1, attemptsUsed: 1 });
    expect(claim?.lease).toEqual({ jobId: id, attempt: 1, workerId: "poller" });
    expect(Date.parse(claim?.expiresAt ?? "")).toBeGreaterThan(Date.now());

    const jobPath = `/v1/worker/jobs/${id}`;
    const stale = await call("POST", `${jobPath}/heartbeat`, {
      attempt: 2,
      workerId: "poller",
      ttlMs: 10_000,
    });
    expect([stale.status, await stale.json()]).toEqual([200, { held: false, cancel: false }]);
    const beat = await call("POST", "/v1/worker/heartbeat", {
      leases: [{ jobId: id, attempt: 1, workerId: "poller" }],
      ttlMs: 10_000,
    });
    expect(await beat.json()).toMatchObject({ answers: [{ held: true, cancel: false }] });
    const events = await call("POST", `${jobPath}/events`, {
      attempt: 1,
      workerId: "poller",
      lines: [
        { stream: "stdout", line: "hi", ts: Date.now(), kind: "line", data: null, cut: false },
      ],
      stored: { stdout: 3, stderr: 0 },
    });
    expect(await events.json()).toMatchObject({ applied: true });
    const outcome = { state: "succeeded", exitCode: 0, signal: null };
    const late = await call("POST", `${jobPath}/complete`, {
      attempt: 2,
      workerId: "poller",
      outcome,
    });
    expect(await late.json()).toMatchObject({ applied: false });
    const missing = await call("POST", `${jobPath}/complete`, {
      attempt: 1,
      workerId: "poller",
      outcome: { ...outcome, state: "failed" },
    });
    expect(missing.status).toBe(400);
    expect(((await missing.json()) as { errors: { field: string }[] }).errors).toEqual([
      { field: "outcome.failure", message: "is required when state is failed" },
    ]);
    const done = await call("POST", `${jobPath}/complete`, {
      attempt: 1,
      workerId: "poller",
      outcome,
    });
    expect(await done.json()).toMatchObject({ applied: true, job: { id, state: "succeeded" } });
    const logs = await baton(["logs", id], { env });
    expect(logs.stdout).toBe("hi\n");
  });

  it("carries claims, heartbeats and answers back exactly as the store holds them", async () => {
    // The same SQLite file as the server, opened here to compare with.
    const store = await openStore(`sqlite:${dbPath}`);
    const remote = new RemoteWorkerStore({
      server: url,
      token: TOKEN,
      logger: createLogger("silent", "json"),
    });
    try {
      const input = {
        queue: "rt",
        command: ["sh", "-c", "true"],
        priority: 3,
        resources: { cpus: 0.5, memoryMb: 64 },
        timeoutMs: 5_000,
        maxAttempts: 3,
        backoff: { baseMs: 10, maxMs: 100 },
        idempotencyKey: "round-trip",
        concurrencyKey: "rt-key",
        env: { A: "1" },
        labels: { team: "x" },
      };
      const { job } = await store.submit(normalizeJobInput(input, Date.now()));
      const request = {
        workerId: "rt",
        queues: ["rt"],
        kinds: ["shell" as const],
        freeCpus: 1,
        freeMemoryMb: null,
        leaseTtlMs: 10_000,
      };
      const claim = await remote.claim(request);
      expect(claim?.job).toEqual(withoutAttempts(await store.get(job.id)));
      const lease = claim!.lease;
      expect(await remote.heldBy("rt")).toEqual([{ ...claim, stored: { stdout: 0, stderr: 0 } }]);
      // Asked in one tick, sent in one request; a refusal is an answer.
      const [held, refused] = await Promise.all([
        remote.heartbeat(lease, 10_000),
        remote.heartbeat({ ...lease, attempt: 9 }, 10_000),
      ]);
      expect(held).toMatchObject({ held: true, cancel: false });
      expect(refused).toEqual({ held: false, cancel: false });
      expect(await remote.cancelRequests("rt")).toEqual([]);
      const outcome = { state: "succeeded" as const, exitCode: 0, signal: null, result: { n: 1 } };
      expect(await remote.complete({ ...lease, attempt: 9 }, outcome)).toMatchObject({
        applied: false,
      });
      const answer = await remote.complete(lease, outcome);
      expect(answer.applied).toBe(true);
      expect(answer.job).toEqual(withoutAttempts(await store.get(job.id)));
      expect(answer.job?.result).toEqual({ n: 1 });
      expect(await remote.claimBatch(request, 5)).toEqual([]);
    } finally {
      remote.close();
      await store.close();
    }
  });

  it("runs handler jobs too: `--handlers` with `--server`", async () => {
    const worker = new Daemon([
      "worker",
      "--server",
      url,
      "--token",
      TOKEN,
      "--name",
      "rh",
      "--state-dir",
      join(dir.path, "rh"),
      "--handlers",
      HANDLERS,
    ]);
    daemons.push(worker);
    await worker.waitForLog(/handler worker running/);
    const submitted = await baton(
      ["submit", "--queue", "rhq", "--handler", "double", "--payload", '{"n":21}'],
      { env },
    );
    const done = await finished(submitted.stdout.trim());
    expect(done).toMatchObject({ state: "succeeded", result: { n: 42 }, workerId: "rh" });
    expect((await baton(["logs", done.id], { env })).stdout).toBe("doubling 21\n");
    await worker.stop();
  });

  it("gives a job back when the answer to its claim was lost, instead of leaving it leased", async () => {
    const proxy = await answerLosingProxy(new URL(url), "POST /v1/worker/claim");
    const remote = new RemoteWorkerStore({
      server: proxy.url,
      token: TOKEN,
      logger: createLogger("silent", "json"),
    });
    try {
      const id = await submit("lost", "true");
      const request = {
        workerId: "lossy",
        queues: ["lost"],
        kinds: ["shell" as const],
        freeCpus: 1,
        freeMemoryMb: null,
        leaseTtlMs: 30_000,
      };
      await expect(remote.claim(request)).rejects.toThrow(/cannot reach Baton/);
      // The server gave it to this worker, which never heard.
      expect((await job(id)).state).toBe("running");
      const claim = await remote.claim(request);
      expect(claim?.lease).toEqual({ jobId: id, attempt: 2, workerId: "lossy" });
      expect(claim?.job.attemptsUsed).toBe(1);
      const first = (await job(id)).attempts?.[0];
      expect(first?.failure?.message).toMatch(/never received its claim/);
    } finally {
      remote.close();
      proxy.close();
    }
  });

  it("follows the server through a restart: the change stream reconnects, jobs run again", async () => {
    const worker = await startRemoteWorker("r5", "rq5");
    const port = new URL(url).port;
    const old = daemons[0]!;
    await old.stop("SIGTERM");
    await worker.waitForLog(/following the server's change stream failed/);
    const restarted = await startServerDaemon(`sqlite:${dbPath}`, [
      "--token",
      TOKEN,
      "--port",
      port,
    ]);
    daemons.push(restarted.daemon);
    await worker.waitForLog(/following the server's change stream works again/);
    const id = await submit("rq5", "echo after the restart");
    expect(await finished(id)).toMatchObject({ state: "succeeded", workerId: "r5" });
  });
});

function withoutAttempts(detail: JobDetail | null): Job | null {
  if (!detail) return null;
  const job: Partial<JobDetail> = { ...detail };
  delete job.attempts;
  return job as Job;
}

/**
 * A TCP proxy to `target` that passes everything except the answer to the first request
 * starting with `requestStart`: the server handles it, the client's connection is cut.
 */
async function answerLosingProxy(
  target: URL,
  requestStart: string,
): Promise<{ url: string; close: () => void }> {
  let lost = false;
  const sockets = new Set<Socket>();
  const proxy = createServer((client) => {
    const upstream = connect(Number(target.port), target.hostname);
    for (const socket of [client, upstream]) {
      sockets.add(socket);
      socket.on("error", () => {});
      socket.on("close", () => {
        sockets.delete(socket);
        client.destroy();
        upstream.destroy();
      });
    }
    let cut = false;
    client.on("data", (chunk: Buffer) => {
      if (!lost && chunk.toString("latin1").startsWith(requestStart)) {
        lost = true;
        cut = true;
      }
      upstream.write(chunk);
    });
    upstream.on("data", (chunk: Buffer) => {
      if (cut) client.destroy();
      else client.write(chunk);
    });
  });
  await new Promise<void>((resolve) => proxy.listen(0, "127.0.0.1", resolve));
  const { port } = proxy.address() as AddressInfo;
  return {
    url: `http://127.0.0.1:${port}`,
    close: () => {
      for (const socket of sockets) socket.destroy();
      proxy.close();
    },
  };
}
