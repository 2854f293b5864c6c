import { readFileSync } from "node:fs";
import { join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import type { JobJson } from "../../src/api/jobJson.js";
import {
  type Daemon,
  baton,
  eventually,
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

const JOBS = 120;

describe("two workers on one SQLite file", () => {
  it("never run the same attempt twice, and share the work", async () => {
    const store = `sqlite:${join(dir.path, "baton.db")}`;
    const record = join(dir.path, "runs.log");
    const { daemon: server, url } = await startServerDaemon(store);
    daemons.push(server);
    for (const name of ["w1", "w2"]) {
      const args = ["--concurrency", "4", "--cpus", "4"];
      daemons.push(await startWorkerDaemon(store, name, join(dir.path, name), args));
    }

    // Each run appends "<job> <attempt> <worker pid>" to one file (O_APPEND: lines stay whole).
    const ids = await Promise.all(
      Array.from({ length: JOBS }, async () => {
        const response = await fetch(`${url}/v1/jobs`, {
          method: "POST",
          headers: { "content-type": "application/json" },
          body: JSON.stringify({
            command: [
              "sh",
              "-c",
              'echo "$BATON_JOB_ID $BATON_ATTEMPT $PPID" >> "$RECORD"; sleep 0.02',
            ],
            env: { RECORD: record },
          }),
        });
        expect(response.status).toBe(201);
        return ((await response.json()) as JobJson).id;
      }),
    );

    const finished = await eventually(
      async () => {
        const response = await fetch(`${url}/v1/jobs?limit=1000`);
        const { jobs } = (await response.json()) as { jobs: JobJson[] };
        return jobs.every((job) => job.state === "succeeded") && jobs.length === JOBS
          ? jobs
          : undefined;
      },
      25_000,
      `all ${JOBS} jobs to succeed`,
    );

    const runs = readFileSync(record, "utf8").trim().split("\n");
    expect(runs).toHaveLength(JOBS);
    const ran = runs.map((line) => line.split(" ")[0]);
    expect(new Set(ran).size).toBe(JOBS);
    expect(new Set(ran)).toEqual(new Set(ids));
    expect(runs.every((line) => line.split(" ")[1] === "1")).toBe(true);
    expect(finished.every((job) => job.attempt === 1)).toBe(true);

    const byWorker = new Map<string, number>();
    for (const job of finished)
      byWorker.set(job.workerId ?? "", (byWorker.get(job.workerId ?? "") ?? 0) + 1);
    expect([...byWorker.keys()].sort()).toEqual(["w1", "w2"]);

    // Across processes, a followed job's output arrives through the store's change watcher.
    const run = await baton(
      ["run", "--", "sh", "-c", "echo across; sleep 0.3; echo processes; exit 4"],
      {
        env: { BATON_SERVER: url },
      },
    );
    expect(run.stdout).toBe("across\nprocesses\n");
    expect(run.code).toBe(4);
  });
});
