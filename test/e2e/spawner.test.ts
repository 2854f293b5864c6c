import { readFileSync } from "node:fs";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { type Daemon, eventually, startBaton, tempDir } from "../helpers/processes.js";

let daemon: Daemon;
let url: string;
const dir = tempDir();
const stateDir = join(dir.path, "state");

beforeAll(async () => {
  const args = ["--data-dir", dir.path, "--state-dir", stateDir, "--concurrency", "16"];
  ({ daemon, url } = await startBaton([...args, "--cpus", "16"]));
});
afterAll(async () => {
  await daemon.stop();
  dir.remove();
});

describe("the job spawner of `baton up`", () => {
  it("is started once however many jobs start at the same moment, and runs them all", async () => {
    const jobs = Array.from({ length: 32 }, (_, i) => ({ command: ["sh", "-c", `echo ${i}`] }));
    const response = await fetch(`${url}/v1/jobs/batch`, {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify({ jobs }),
    });
    expect(response.status).toBe(201);
    await eventually(
      async () => {
        const stats = (await (await fetch(`${url}/v1/stats`)).json()) as {
          overall: { succeeded: number };
        };
        return stats.overall.succeeded === 32 ? true : undefined;
      },
      20_000,
      "32 jobs succeeded",
    );
    const log = readFileSync(join(stateDir, "supervisor.log"), "utf8");
    expect(log.match(/job spawner \d+ started/g)).toHaveLength(1);
  });
});
