import { writeFileSync } from "node:fs";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { JobJson } from "../../src/api/jobJson.js";
import { baton, type Daemon, startBaton, tempDir } from "../helpers/processes.js";

let daemon: Daemon;
let url = "";
let env: Record<string, string>;
const dir = tempDir();

beforeAll(async () => {
  const started = await startBaton(["--data-dir", dir.path]);
  daemon = started.daemon;
  url = started.url;
  env = { BATON_SERVER: url };
});
afterAll(async () => {
  await daemon.stop();
  dir.remove();
});

async function jobCount(): Promise<number> {
  const page = (await (await fetch(`${url}/v1/jobs?limit=1000`)).json()) as { jobs: JobJson[] };
  return page.jobs.length;
}

describe("batch submit", () => {
  it("submits every line of a JSON Lines file and prints the ids in order", async () => {
    const file = join(dir.path, "jobs.jsonl");
    const lines = [
      { command: ["echo", "one"] },
      { script: "echo two", priority: 2 },
      { command: ["echo", "three"], labels: { batch: "b1" } },
    ];
    writeFileSync(file, `${lines.map((l) => JSON.stringify(l)).join("\n")}\n\n`);
    const result = await baton(["submit", "--batch", file], { env });
    expect(result.code).toBe(0);
    const ids = result.stdout.trim().split("\n");
    expect(ids).toHaveLength(3);
    expect(ids.map(Number)).toEqual([...ids.map(Number)].sort((a, b) => a - b));
    const third = (await (await fetch(`${url}/v1/jobs/${ids[2]}`)).json()) as JobJson;
    expect(third.labels).toEqual({ batch: "b1" });
  });

  it("stores none when one entry is invalid, naming the entry", async () => {
    const before = await jobCount();
    const response = await fetch(`${url}/v1/jobs/batch`, {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify({ jobs: [{ command: ["ok"] }, { command: [""] }, { script: "x" }] }),
    });
    expect(response.status).toBe(400);
    const problem = (await response.json()) as { errors: Array<{ field: string }> };
    expect(problem.errors[0]?.field).toBe("jobs[1].command");
    const schemaError = await fetch(`${url}/v1/jobs/batch`, {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify({ jobs: [{ command: ["ok"] }, { command: ["ok"], priority: 99 }] }),
    });
    const schemaProblem = (await schemaError.json()) as { errors: Array<{ field: string }> };
    expect(schemaProblem.errors[0]?.field).toBe("jobs[1].priority");
    expect(await jobCount()).toBe(before);
  });

  it("exits 2 naming the line that is not JSON, and submits nothing", async () => {
    const before = await jobCount();
    const file = join(dir.path, "broken.jsonl");
    writeFileSync(file, '{"command":["ok"]}\n{"command": [oops\n');
    const result = await baton(["submit", "--batch", file], { env });
    expect(result.code).toBe(2);
    expect(result.stderr).toMatch(/--batch .*broken\.jsonl, line 2:/);
    expect(await jobCount()).toBe(before);
  });
});
