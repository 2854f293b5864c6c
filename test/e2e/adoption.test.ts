import { writeFileSync } from "node:fs";
import { join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { api } from "../helpers/api.js";
import {
  Daemon,
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
// A lease long enough for a worker to be restarted within it on a slow machine.
const LEASE = ["--lease-ttl", "6s", "--heartbeat-interval", "500ms", "--kill-grace", "500ms"];

let url = "";
async function server(): Promise<string> {
  if (url) return url;
  const { daemon, url: started } = await startServerDaemon(store(), ["--reap-interval", "100ms"]);
  daemons.push(daemon);
  url = started;
  return url;
}

// Each test uses a queue of its own, so that workers of one test never take another's jobs.
async function startWorker(name: string, queue: string): Promise<Daemon> {
  const args = ["--queues", queue, ...LEASE];
  const worker = await startWorkerDaemon(store(), name, join(dir.path, name), args);
  daemons.push(worker);
  return worker;
}

async function killWorker(worker: Daemon): Promise<void> {
  worker.child.kill("SIGKILL");
  await worker.exited;
}

describe("a worker restarted under the same name and state directory", () => {
  it("adopts its running job: output resumes where it stopped, the real exit code is recorded", async () => {
    const base = await server();
    const w1 = await startWorker("a1", "qa1");
    // Writes on: while the worker is down the job blocks on its pipe or is buffered, not killed.
    const id = await api(base).submit({
      queue: "qa1",
      command: [
        "sh",
        "-c",
        'echo $$; i=1; while [ ! -e "$BATON_WORKDIR/../../go" ] || [ $i -le 40 ]; do echo "line $i"; echo "err $i" >&2; i=$((i+1)); sleep 0.02; done; exit 7',
      ],
    });
    const pgid = Number(await api(base).firstLine(id));
    await killWorker(w1);
    // ps can miss a process for an instant (its exec in progress): look until it shows.
    await eventually(() => (liveProcessesInGroup(pgid).length > 0 ? true : undefined));

    const w1again = await startWorker("a1", "qa1");
    await w1again.waitForLog(/adopting a job/);
    // Let the job finish only now, so that part of its output is written after the adoption.
    writeFileSync(join(dir.path, "a1", "go"), "");
    const done = await eventually(async () => {
      const current = await api(base).job(id);
      return current.state !== "running" ? current : undefined;
    }, 20_000);
    expect(done.state).toBe("failed");
    expect(done.exitCode).toBe(7);
    expect(done.failure?.reason).toBe("exit_code");
    expect(done.attempts).toHaveLength(1);

    const lines = await api(base).lines(id);
    const out = lines.filter((l) => l.stream === "stdout").map((l) => l.line);
    const err = lines.filter((l) => l.stream === "stderr").map((l) => l.line);
    const count = out.length - 1;
    expect(count).toBeGreaterThanOrEqual(40);
    // Every line exactly once, in order: nothing lost or repeated across the restart.
    expect(out).toEqual([
      String(pgid),
      ...Array.from({ length: count }, (_, i) => `line ${i + 1}`),
    ]);
    expect(err).toEqual(Array.from({ length: count }, (_, i) => `err ${i + 1}`));
    expect(lines.every((l) => l.attempt === 1)).toBe(true);
  });

  it("records the real exit code of a job that ended while the worker was down", async () => {
    const base = await server();
    const w2 = await startWorker("a2", "qa2");
    const id = await api(base).submit({
      queue: "qa2",
      command: [
        "sh",
        "-c",
        'echo $$; while [ ! -e "$BATON_WORKDIR/../../go" ]; do sleep 0.02; done; echo finished; exit 5',
      ],
    });
    const pgid = Number(await api(base).firstLine(id));
    await killWorker(w2);
    writeFileSync(join(dir.path, "a2", "go"), "");
    await eventually(() => (liveProcessesInGroup(pgid).length === 0 ? true : undefined), 5_000);
    expect((await api(base).job(id)).state).toBe("running");

    await startWorker("a2", "qa2");
    const done = await eventually(async () => {
      const current = await api(base).job(id);
      return current.state !== "running" ? current : undefined;
    });
    expect([done.state, done.exitCode, done.attempts?.length]).toEqual(["failed", 5, 1]);
    expect((await api(base).lines(id)).map((l) => l.line)).toEqual([String(pgid), "finished"]);
  });

  it("fails at once, as worker_lost, a job whose process vanished with its supervisor", async () => {
    const base = await server();
    const w3 = await startWorker("a3", "qa3");
    const supervisor = Number((await w3.waitForLog(/"supervisorPid":(\d+)/))[1]);
    const id = await api(base).submit({
      queue: "qa3",
      command: ["sh", "-c", "echo $$; exec sleep 300"],
    });
    const pgid = Number(await api(base).firstLine(id));
    await killWorker(w3);
    process.kill(supervisor, "SIGKILL");
    process.kill(-pgid, "SIGKILL");

    const restartedAt = Date.now();
    await startWorker("a3", "qa3");
    const done = await eventually(async () => {
      const current = await api(base).job(id);
      return current.state !== "running" ? current : undefined;
    });
    expect(done.state).toBe("failed");
    expect(done.failure?.reason).toBe("worker_lost");
    expect(done.failure?.message).toMatch(/restarted and found the job's process gone/);
    // Decided by the restart, not by the lease running out.
    expect(Date.now() - restartedAt).toBeLessThan(6_000);
  });

  it("refuses to start beside a live worker of the same name and state directory", async () => {
    await startWorker("a4", "qa4");
    const twin = new Daemon(
      ["worker", "--store", store(), "--name", "a4"].concat([
        "--state-dir",
        join(dir.path, "a4"),
        ...LEASE,
      ]),
    );
    daemons.push(twin);
    expect(await twin.exited).toEqual({ code: 2, signal: null });
    expect(twin.stderr).toMatch(
      /another worker process \(pid \d+\) is running with this state directory/,
    );
  });
});
