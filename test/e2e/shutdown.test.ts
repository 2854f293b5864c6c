import { api } from "../helpers/api.js";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
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
let url: string;
const store = `sqlite:${join(dir.path, "baton.db")}`;

beforeAll(async () => {
  const started = await startServerDaemon(store);
  daemons.push(started.daemon);
  url = started.url;
});
afterAll(async () => {
  await Promise.all(daemons.map((d) => d.stop("SIGKILL")));
  dir.remove();
});

async function startWorker(name: string, queue: string, grace: string): Promise<Daemon> {
  const args = ["--queues", queue, "--shutdown-grace", grace, "--kill-grace", "500ms"];
  const worker = await startWorkerDaemon(store, name, join(dir.path, name), args);
  daemons.push(worker);
  return worker;
}

describe("graceful shutdown of a worker (SIGTERM)", () => {
  it("lets a job finish within the grace", async () => {
    const worker = await startWorker("g1", "grace-ok", "10s");
    const id = await api(url).submit({
      queue: "grace-ok",
      command: ["sh", "-c", "echo go; sleep 0.5; echo done"],
    });
    await api(url).firstLine(id);
    expect(await worker.stop("SIGTERM")).toEqual({ code: 0, signal: null });
    expect(await api(url).job(id)).toMatchObject({ state: "succeeded", exitCode: 0 });
  });

  it("releases a job still running after the grace to pending without spending an attempt", async () => {
    const worker = await startWorker("g2", "grace-over", "1s");
    const id = await api(url).submit({
      queue: "grace-over",
      maxAttempts: 1,
      command: ["sh", "-c", 'echo $$; [ "$BATON_ATTEMPT" = 1 ] && exec sleep 300; echo again'],
    });
    const pgid = Number(await api(url).firstLine(id));
    expect(await worker.stop("SIGTERM")).toEqual({ code: 0, signal: null });
    expect(liveProcessesInGroup(pgid)).toEqual([]);
    const released = await api(url).job(id);
    expect(released.state).toBe("pending");
    expect(released.attempts?.[0]?.failure?.reason).toBe("shutdown");

    // maxAttempts is 1, yet the job runs again: the released attempt did not count.
    await startWorker("g3", "grace-over", "1s");
    const done = await eventually(async () => {
      const current = await api(url).job(id);
      return current.state === "succeeded" ? current : undefined;
    });
    expect(done.attempts?.map((a) => a.failure?.reason ?? "ok")).toEqual(["shutdown", "ok"]);
  });

  it("stops at once on a second signal", async () => {
    const worker = await startWorker("g4", "grace-twice", "60s");
    const id = await api(url).submit({
      queue: "grace-twice",
      command: ["sh", "-c", "echo $$; exec sleep 300"],
    });
    const pgid = Number(await api(url).firstLine(id));
    worker.child.kill("SIGTERM");
    await worker.waitForLog(/worker draining/);
    const second = Date.now();
    worker.child.kill("SIGTERM");
    expect(await worker.exited).toEqual({ code: 0, signal: null });
    expect(Date.now() - second).toBeLessThan(5_000);
    expect(liveProcessesInGroup(pgid)).toEqual([]);
    expect((await api(url).job(id)).state).toBe("pending");
  });
});
