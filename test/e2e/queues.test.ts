import { readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { JobJson } from "../../src/api/jobJson.js";
import type { QueueInfo } from "../../src/core/queue.js";
import { api } from "../helpers/api.js";
import { baton, type Daemon, eventually, startBaton, tempDir } from "../helpers/processes.js";

let daemon: Daemon;
let url = "";
let env: Record<string, string>;
const dir = tempDir();

beforeAll(async () => {
  const started = await startBaton(["--data-dir", dir.path, "--concurrency", "8"]);
  daemon = started.daemon;
  url = started.url;
  env = { BATON_SERVER: url };
});
afterAll(async () => {
  await daemon.stop();
  dir.remove();
});

async function state(id: string): Promise<string> {
  return (await api(url).job(id)).state;
}

describe("queues", () => {
  it("holds a queue's limit, pauses and resumes it, through the CLI", async () => {
    expect((await baton(["queues", "set-limit", "builds", "1"], { env })).code).toBe(0);
    const marker = join(dir.path, "go");
    const wait = `while [ ! -e ${marker} ]; do sleep 0.02; done`;
    const first = await api(url).submit({ queue: "builds", command: ["sh", "-c", wait] });
    const second = await api(url).submit({ queue: "builds", command: ["true"] });
    await eventually(async () => ((await state(first)) === "running" ? true : undefined));
    const listed = await baton(["queues", "ls", "--json"], { env });
    const builds = (JSON.parse(listed.stdout) as QueueInfo[]).find((q) => q.name === "builds");
    expect(builds).toEqual({
      name: "builds",
      paused: false,
      maxRunning: 1,
      running: 1,
      pending: 1,
    });

    // Paused: the second job stays pending even once the slot frees.
    expect((await baton(["queues", "pause", "builds"], { env })).code).toBe(0);
    writeFileSync(marker, "");
    await eventually(async () => ((await state(first)) === "succeeded" ? true : undefined));
    expect(await state(second)).toBe("pending");
    const resumed = await baton(["queues", "resume", "builds"], { env });
    expect(resumed.stdout).toMatch(/builds\s+active\s+1/);
    await eventually(async () => ((await state(second)) === "succeeded" ? true : undefined));
  });

  it("runs jobs sharing a concurrency key one at a time", async () => {
    const record = join(dir.path, "key.log");
    const script = `echo "start $(date +%s%N)" >> ${record}; sleep 0.2; echo "end $(date +%s%N)" >> ${record}`;
    const submitted = await Promise.all(
      [1, 2, 3].map(() =>
        baton(["submit", "--concurrency-key", "customer-7", "--", "sh", "-c", script], { env }),
      ),
    );
    const ids = submitted.map((r) => r.stdout.trim());
    await eventually(async () => {
      const jobs = await Promise.all(ids.map((id) => api(url).job(id)));
      return jobs.every((j: JobJson) => j.state === "succeeded") ? true : undefined;
    });
    const events = readFileSync(record, "utf8")
      .trim()
      .split("\n")
      .map((l) => l.split(" ")[0]);
    // Never two at once: starts and ends alternate.
    expect(events).toEqual(["start", "end", "start", "end", "start", "end"]);
  });

  it("rejects a bad limit with exit 2 and an unknown field with a 400", async () => {
    const bad = await baton(["queues", "set-limit", "builds", "0"], { env });
    expect(bad.code).toBe(2);
    expect(bad.stderr).toMatch(/positive integer or "none"/);
    const response = await fetch(`${url}/v1/queues/builds`, {
      method: "PUT",
      headers: { "content-type": "application/json" },
      body: JSON.stringify({ limit: 3 }),
    });
    expect(response.status).toBe(400);
  });
});
