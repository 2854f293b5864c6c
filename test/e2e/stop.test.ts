import { api } from "../helpers/api.js";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { JobJson } from "../../src/api/jobJson.js";
import {
  baton,
  type Daemon,
  eventually,
  liveProcessesInGroup,
  startBaton,
  tempDir,
} from "../helpers/processes.js";

let daemon: Daemon;
let url: string;
let env: Record<string, string>;
const dir = tempDir();

// Each job prints its shell's pid (the process group leader: the job's pgid) and the pid of
// a background grandchild, so the test can check that the whole group is gone afterwards.
const TREE = 'sleep 300 & echo "$$ $!"; sleep 300; wait';

beforeAll(async () => {
  // A short kill grace keeps the test fast; the jobs here die on SIGTERM anyway.
  const started = await startBaton([
    "--data-dir",
    dir.path,
    "--kill-grace",
    "2s",
    "--shutdown-grace",
    "1s",
  ]);
  daemon = started.daemon;
  url = started.url;
  env = { BATON_SERVER: url };
});
afterAll(async () => {
  await daemon.stop();
  dir.remove();
});

describe("stopping jobs", () => {
  it("fails a job past its timeout with reason timeout and leaves no process behind", async () => {
    const result = await baton(["run", "--timeout", "1s", "--", "sh", "-c", TREE], { env });
    expect(result.stderr).toMatch(/failed: timeout/);
    expect(result.code).toBe(143); // stopped by SIGTERM
    const [pgid] = result.stdout.trim().split(" ").map(Number);
    expect(pgid).toBeGreaterThan(1);
    expect(liveProcessesInGroup(pgid as number)).toEqual([]);

    const list = await baton(["jobs", "ls", "--json", "--limit", "1"], { env });
    const [last] = (JSON.parse(list.stdout) as { jobs: JobJson[] }).jobs;
    expect(last?.state).toBe("failed");
    expect(last?.failure).toEqual({ reason: "timeout", message: "timed out after 1.0s" });
  });

  it("cancels a running job: the whole process group stops and the job ends cancelled", async () => {
    const submitted = await baton(["submit", "--", "sh", "-c", TREE], { env });
    const id = submitted.stdout.trim();
    const [pgid, grandchild] = (await api(url).firstLine(id)).split(" ").map(Number);
    expect(liveProcessesInGroup(pgid as number)).toContain(grandchild);

    const cancel = await baton(["cancel", id], { env });
    expect(cancel.code).toBe(0);
    const cancelled = await eventually(
      async () => {
        const current = await api(url).job(id);
        return current.state === "cancelled" ? current : undefined;
      },
      10_000,
      "the job to end cancelled",
    );
    expect(cancelled.failure?.reason).toBe("cancelled");
    expect(cancelled.attempts?.[0]?.failure?.reason).toBe("cancelled");
    expect(liveProcessesInGroup(pgid as number)).toEqual([]);

    // Cancelling again, or cancelling a finished job, answers 200 with the job unchanged.
    const again = await fetch(`${url}/v1/jobs/${id}/cancel`, { method: "POST" });
    expect(again.status).toBe(200);
    expect(await again.json()).toEqual(cancelled);

    const done = await baton(["run", "--", "true"], { env });
    expect(done.code).toBe(0);
    const list = await baton(["jobs", "ls", "--json", "--limit", "1"], { env });
    const finished = (JSON.parse(list.stdout) as { jobs: JobJson[] }).jobs[0] as JobJson;
    const before = await api(url).job(finished.id);
    const response = await fetch(`${url}/v1/jobs/${finished.id}/cancel`, { method: "POST" });
    expect(response.status).toBe(200);
    expect(await response.json()).toEqual(before);
    expect(before.state).toBe("succeeded");
  });

  it("cancels a pending job at once", async () => {
    const submitted = await baton(["submit", "--delay", "1h", "--", "true"], { env });
    const id = submitted.stdout.trim();
    const cancel = await baton(["cancel", id, "--json"], { env });
    expect(JSON.parse(cancel.stdout)).toMatchObject({ id, state: "cancelled" });
  });
});
