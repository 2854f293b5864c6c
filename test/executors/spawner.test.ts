import { chmodSync, existsSync, readFileSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { Execution } from "../../src/executors/executor.js";
import { liveGroupMembers, readProcStat } from "../../src/executors/processGroup.js";
import { type GroupSpawn, superviseGroup } from "../../src/executors/shellExecutor.js";
import { SPAWNER_PATH, Spawner } from "../../src/executors/spawner.js";
import { tempDir } from "../helpers/processes.js";

const built = existsSync(SPAWNER_PATH);
if (!built && !process.env.CI) {
  process.stderr.write(`skipping spawner tests: ${SPAWNER_PATH} is not built (npm run build)\n`);
}

const ENV = { PATH: "/usr/bin:/bin", BATON_TEST: "yes" };

/** Polls a condition of the outside world (a process's state) until it holds. */
async function until(what: string, condition: () => boolean): Promise<void> {
  const deadline = Date.now() + 10_000;
  while (!condition()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting until ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 5));
  }
}

async function startSpawner(onDeath: (cause: string) => void): Promise<Spawner> {
  const started = await Spawner.start(onDeath);
  if ("unusable" in started) throw new Error(started.unusable);
  return started.spawner;
}

describe.skipIf(!built && !process.env.CI)("the job spawner", () => {
  const deaths: string[] = [];
  let spawner: Spawner;
  beforeAll(async () => {
    spawner = await startSpawner((cause) => deaths.push(cause));
  });
  afterAll(() => spawner.stop());

  async function start(file: string, args: string[], more: Partial<GroupSpawn> = {}) {
    const spec: GroupSpawn = { file, args, cwd: tmpdir(), env: ENV, killGraceMs: 500, ...more };
    const child = spawner.start(spec);
    const execution = superviseGroup(child, spec);
    await child.ready;
    return execution;
  }

  function collect(execution: Execution): { stdout: () => string; stderr: () => string } {
    const out: Buffer[] = [];
    const err: Buffer[] = [];
    execution.stdout.on("data", (chunk: Buffer) => out.push(chunk));
    execution.stderr.on("data", (chunk: Buffer) => err.push(chunk));
    return {
      stdout: () => Buffer.concat(out).toString(),
      stderr: () => Buffer.concat(err).toString(),
    };
  }

  it("runs a program found on the job's PATH, relays both streams and the exit code", async () => {
    const execution = await start("sh", ["-c", "echo out; echo err >&2; exit 3"]);
    const output = collect(execution);
    expect(await execution.done).toEqual({ exitCode: 3, signal: null, spawnError: null });
    expect(output.stdout()).toBe("out\n");
    expect(output.stderr()).toBe("err\n");
  });

  it("gives the job exactly its environment, /dev/null as stdin, and no ignored signals", async () => {
    const env = await start("sh", ["-c", "env; cat; grep SigIgn /proc/self/status"]);
    const output = collect(env);
    expect((await env.done).exitCode).toBe(0);
    const lines = output.stdout().trim().split("\n");
    expect(lines).toContain("BATON_TEST=yes");
    expect(lines.some((line) => line.startsWith("HOME="))).toBe(false);
    expect(lines.at(-1)).toMatch(/^SigIgn:\s+0+$/);
  });

  it("runs an executable script without a #! line with sh, as execvp does", async () => {
    const dir = tempDir("baton-spawner-");
    const script = join(dir.path, "noshebang");
    writeFileSync(script, 'echo "ran with $1"\n');
    chmodSync(script, 0o755);
    const execution = await start("./noshebang", ["arg"], { cwd: dir.path });
    const output = collect(execution);
    expect((await execution.done).exitCode).toBe(0);
    expect(output.stdout()).toBe("ran with arg\n");
    dir.remove();
  });

  it("gives each job's start time, which with its pid identifies the process", async () => {
    const spec: GroupSpawn = {
      file: "sleep",
      args: ["30"],
      cwd: tmpdir(),
      env: ENV,
      killGraceMs: 500,
    };
    const child = spawner.start(spec);
    const execution = superviseGroup(child, spec);
    await child.ready;
    expect(child.startTime).not.toBeNull();
    expect(child.startTime).toBe(readProcStat(child.pid as number)?.startTime);
    execution.stop();
    await execution.done;
  });

  it("passes the job no descriptor beyond stdin, stdout and stderr", async () => {
    const execution = await start("ls", ["/proc/self/fd"]);
    const output = collect(execution);
    expect((await execution.done).exitCode).toBe(0);
    // 3 is the directory ls itself opened to list.
    expect(output.stdout().trim().split("\n").sort()).toEqual(["0", "1", "2", "3"]);
  });

  it("reports a signal that ended the job, and a job that could not start", async () => {
    const killed = await start("sh", ["-c", "kill -KILL $$"]);
    collect(killed);
    expect(await killed.done).toMatchObject({ exitCode: null, signal: "SIGKILL" });

    const missing = await start("no-such-program-anywhere", []);
    collect(missing);
    expect((await missing.done).spawnError).toMatch(/command not found/);
    const badCwd = await start("true", [], { cwd: "/no/such/directory" });
    collect(badCwd);
    expect((await badCwd.done).spawnError).toMatch(/working directory is missing/);
    const nul = await start("echo", ["a\0b"]);
    collect(nul);
    expect((await nul.done).spawnError).toMatch(/NUL byte/);
  });

  it("starts each job as the leader of its own group; a stop ends the whole group", async () => {
    const execution = await start("sh", ["-c", "sleep 30 & sleep 30; wait"]);
    collect(execution);
    const pid = execution.pid as number;
    expect(readProcStat(pid)?.pgrp).toBe(pid);
    await until("the job has its two sleeps", () => liveGroupMembers(pid).length === 3);
    execution.stop();
    expect((await execution.done).signal).toBe("SIGTERM");
    expect(liveGroupMembers(pid)).toEqual([]);
  });

  it("stops what a job left running in its group once the job ends", async () => {
    const execution = await start("sh", ["-c", "sleep 30 & echo $!"]);
    const output = collect(execution);
    expect((await execution.done).exitCode).toBe(0);
    const leftover = Number(output.stdout().trim());
    expect(leftover).toBeGreaterThan(0);
    await until("the leftover sleep is gone", () => readProcStat(leftover)?.state !== "S");
  });

  it("blocks a job's writes while its reader is paused, and loses nothing", async () => {
    const execution = await start("head", ["-c", "4000000", "/dev/zero"]);
    let received = 0;
    execution.stdout.on("data", (chunk: Buffer) => {
      received += chunk.length;
    });
    execution.stdout.pause();
    const pid = execution.pid as number;
    const wchan = () => readFileSync(`/proc/${pid}/wchan`, "utf8");
    await until("the job blocks writing to its pipe", () => /pipe_write$/.test(wchan()));
    expect(received).toBe(0);
    execution.stdout.resume();
    expect((await execution.done).exitCode).toBe(0);
    expect(received).toBe(4_000_000);
  });

  it("reports the jobs of a spawner that died as lost, kills them, and a new one starts jobs", async () => {
    const execution = await start("sleep", ["30"]);
    collect(execution);
    const pid = execution.pid as number;
    process.kill(spawner.pid as number, "SIGKILL");
    const status = await execution.done;
    expect(status).toMatchObject({ signal: "SIGKILL" });
    expect(status.lost).toMatch(/the job spawner died/);
    expect(deaths).toHaveLength(1);
    await until("the orphaned job is dead", () => liveGroupMembers(pid).length === 0);

    spawner = await startSpawner((cause) => deaths.push(cause));
    const next = await start("true", []);
    collect(next);
    expect((await next.done).exitCode).toBe(0);
  });
});

describe("a job spawner that cannot be used", () => {
  it("is reported unusable, not built or not runnable here, so that Node starts the jobs", async () => {
    const missing = await Spawner.start(() => {}, "/no/such/baton-spawner");
    expect(missing).toEqual({ unusable: "/no/such/baton-spawner was not built" });

    const dir = tempDir("baton-spawner-");
    const foreign = join(dir.path, "baton-spawner");
    writeFileSync(foreign, Buffer.from([0x7f, 0x45, 0x4c, 0x46, 0, 0, 0, 0]));
    chmodSync(foreign, 0o755);
    const deaths: string[] = [];
    const started = await Spawner.start((cause) => deaths.push(cause), foreign);
    expect("unusable" in started && started.unusable).toMatch(/does not run here/);
    expect(deaths).toEqual([]);
    dir.remove();
  });
});
