import { join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { api } from "../helpers/api.js";
import {
  type Daemon,
  eventually,
  liveProcessesInGroup,
  startServerDaemon,
  startWorkerDaemon,
  tempDir,
} from "../helpers/processes.js";

const dir = tempDir();
const daemons: Daemon[] = [];
afterAll(async () => {
  await Promise.all(daemons.map((d) => d.stop("SIGKILL")));
  dir.remove();
});

const store = () => `sqlite:${join(dir.path, "baton.db")}`;
const LEASE = ["--lease-ttl", "2s", "--heartbeat-interval", "400ms", "--kill-grace", "500ms"];

async function startServer(): Promise<string> {
  const { daemon, url } = await startServerDaemon(store(), ["--reap-interval", "100ms"]);
  daemons.push(daemon);
  return url;
}

// Each test uses a queue of its own, so that workers of one test never take another's jobs.
async function startWorker(name: string, queue: string): Promise<Daemon> {
  const args = ["--queues", queue, ...LEASE];
  const worker = await startWorkerDaemon(store(), name, join(dir.path, name), args);
  daemons.push(worker);
  return worker;
}

describe("a worker killed with kill -9", () => {
  it("has its job stopped by the supervisor within the lease, then retried elsewhere, never twice at once", async () => {
    const url = await startServer();
    const w1 = await startWorker("w1", "q1");
    const id = await api(url).submit({
      command: ["sh", "-c", 'echo $$; [ "$BATON_ATTEMPT" = 1 ] && exec sleep 300; echo second'],
      queue: "q1",
      maxAttempts: 2,
      backoff: { baseMs: 0 },
    });
    const pgid = Number(await api(url).firstLine(id));
    // ps can miss a process for an instant (its exec in progress): look until it shows.
    await eventually(() => (liveProcessesInGroup(pgid).length > 0 ? true : undefined));

    const killedAt = Date.now();
    w1.child.kill("SIGKILL");
    await w1.exited;
    // The lease was renewed at most one heartbeat interval before the kill: it expires by
    // killedAt + TTL, and the job must be dead by then.
    await eventually(
      () => (liveProcessesInGroup(pgid).length === 0 ? true : undefined),
      4_000,
      "the supervisor to stop the orphaned job",
    );
    const stoppedAfter = Date.now() - killedAt;
    expect(stoppedAfter).toBeLessThan(2_000 + 200);

    await startWorker("w2", "q1");
    const done = await eventually(async () => {
      const current = await api(url).job(id);
      return current.state === "succeeded" ? current : undefined;
    });
    expect(done.attempts?.map((a) => [a.workerId, a.failure?.reason ?? "ok"])).toEqual([
      ["w1", "worker_lost"],
      ["w2", "ok"],
    ]);
    const first = done.attempts?.[0];
    const second = done.attempts?.[1];
    // The retry started only after the first attempt's lease (and process) had ended.
    expect(Date.parse(second?.startedAt ?? "")).toBeGreaterThanOrEqual(killedAt + stoppedAfter);
    expect(first?.finishedAt).not.toBeNull();
  });

  it("fails a shell job with worker_lost rather than re-running it behind the user's back", async () => {
    const url = await startServer();
    const w3 = await startWorker("w3", "q2");
    const id = await api(url).submit({
      queue: "q2",
      command: ["sh", "-c", "echo $$; exec sleep 300"],
    });
    const pgid = Number(await api(url).firstLine(id));
    w3.child.kill("SIGKILL");
    const failed = await eventually(async () => {
      const current = await api(url).job(id);
      return current.state === "failed" ? current : undefined;
    });
    expect(failed.failure?.reason).toBe("worker_lost");
    expect(failed.attempts).toHaveLength(1);
    await eventually(() => (liveProcessesInGroup(pgid).length === 0 ? true : undefined), 4_000);
  });
});

describe("a server restart", () => {
  it("never cancels or fails the jobs live workers hold", async () => {
    const { daemon: server, url } = await startServerDaemon(store());
    daemons.push(server);
    await startWorker("w4", "q3");
    const id = await api(url).submit({
      queue: "q3",
      command: ["sh", "-c", "echo started; sleep 1.5; echo finished"],
    });
    await api(url).firstLine(id);
    expect(await server.stop("SIGTERM")).toEqual({ code: 0, signal: null });
    const url2 = await startServer();
    const done = await eventually(async () => {
      const current = await api(url2).job(id);
      return current.state !== "running" ? current : undefined;
    });
    expect(done.state).toBe("succeeded");
    expect(done.attempts).toHaveLength(1);
  });
});
