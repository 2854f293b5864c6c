import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { JobJson } from "../../src/api/jobJson.js";
import { baton, type Daemon, startBaton, tempDir } from "../helpers/processes.js";

let daemon: Daemon;
let env: Record<string, string>;
const dir = tempDir();

beforeAll(async () => {
  const started = await startBaton(["--data-dir", dir.path]);
  daemon = started.daemon;
  env = { BATON_SERVER: started.url };
});
afterAll(async () => {
  await daemon.stop();
  dir.remove();
});

describe("baton run", () => {
  it("streams the job's output and exits with its exit code", async () => {
    const result = await baton(["run", "--", "sh", "-c", "echo hello; echo oops >&2; exit 3"], {
      env,
    });
    expect(result.stdout).toBe("hello\n");
    expect(result.stderr).toBe("oops\n");
    expect(result.code).toBe(3);
  });

  it("reports a job killed by a signal with the signal, exiting 128 + its number", async () => {
    const result = await baton(["run", "--", "sh", "-c", "echo before; kill -KILL $$"], { env });
    expect(result.stdout).toBe("before\n");
    expect(result.stderr).toContain("killed by SIGKILL");
    expect(result.code).toBe(137);
    const list = await baton(["jobs", "ls", "--json"], { env });
    const jobs = (JSON.parse(list.stdout) as { jobs: JobJson[] }).jobs;
    const killed = jobs.find((job) => job.command?.includes("echo before; kill -KILL $$"));
    expect(killed).toMatchObject({ state: "failed", exitCode: null, signal: "SIGKILL" });
  });

  it("exits 0 with the output of a successful job, runs without options after the program name", async () => {
    const result = await baton(["run", "printf", "%s-%s\\n", "-n", "two words"], { env });
    expect(result.stdout).toBe("-n-two words\n");
    expect(result.code).toBe(0);
  });

  it("runs a script from stdin with the job's environment", async () => {
    const result = await baton(["run", "--env", "GREETING=hi there", "--script", "-"], {
      env,
      input: 'echo "$GREETING from job $BATON_JOB_ID attempt $BATON_ATTEMPT"\npwd\n',
    });
    expect(result.code).toBe(0);
    const [greeting, cwd] = result.stdout.trim().split("\n");
    expect(greeting).toMatch(/^hi there from job \d+ attempt 1$/);
    expect(cwd).toContain(dir.path); // a fresh directory under the worker's state dir
  });

  it("reports a command that does not exist as a spawn error", async () => {
    const result = await baton(["run", "--", "no-such-program-xyz"], { env });
    expect(result.code).toBe(1);
    expect(result.stderr).toContain("spawn_error");
    expect(result.stderr).toContain("no-such-program-xyz: command not found");
  });
});

describe("submit, jobs, logs", () => {
  it("prints the id, shows the job with its attempts, and prints its logs", async () => {
    const submitted = await baton(
      [
        "submit",
        "--priority",
        "3",
        "--label",
        "team=ops",
        "--",
        "sh",
        "-c",
        "echo one; echo two >&2; echo three",
      ],
      { env },
    );
    expect(submitted.code).toBe(0);
    const id = submitted.stdout.trim();
    expect(id).toMatch(/^\d+$/);

    // Following the log ends when the job ends, with its exit code.
    const followed = await baton(["logs", "-f", id], { env });
    expect(followed.code).toBe(0);
    expect(followed.stdout).toBe("one\nthree\n");
    expect(followed.stderr).toBe("two\n");

    const logs = await baton(["logs", id, "--json"], { env });
    const events = logs.stdout
      .trim()
      .split("\n")
      .map(
        (line) =>
          JSON.parse(line) as { seq: number; stream: string; line: string; attempt: number },
      );
    // Lines of one stream keep their order; across the two pipes, reads interleave freely.
    expect(events.every((e) => e.attempt === 1)).toBe(true);
    expect(events.map((e) => e.seq)).toEqual([1, 2, 3]);
    expect(events.filter((e) => e.stream === "stdout").map((e) => e.line)).toEqual([
      "one",
      "three",
    ]);
    expect(events.filter((e) => e.stream === "stderr").map((e) => e.line)).toEqual(["two"]);

    const shown = await baton(["jobs", "show", id, "--json"], { env });
    const job = JSON.parse(shown.stdout) as JobJson;
    expect(job).toMatchObject({
      id,
      state: "succeeded",
      priority: 3,
      exitCode: 0,
      labels: { team: "ops" },
      attempt: 1,
    });
    expect(job.attempts).toHaveLength(1);
    expect(job.attempts?.[0]).toMatchObject({ attempt: 1, exitCode: 0, failure: null });
    expect(Date.parse(job.finishedAt ?? "")).toBeGreaterThanOrEqual(
      Date.parse(job.startedAt ?? ""),
    );

    const table = await baton(["jobs", "show", id], { env });
    expect(table.stdout).toMatch(/state:\s+succeeded/);
    expect(table.stdout).toMatch(/ATTEMPT\s+WORKER/);

    const list = await baton(["jobs", "--state", "succeeded"], { env });
    expect(list.stdout).toMatch(new RegExp(`^${id}\\s+succeeded`, "m"));
  });
});
