import { join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import type { JobJson } from "../../src/api/jobJson.js";
import { baton, Daemon, eventually, startBaton, tempDir } from "../helpers/processes.js";

const dir = tempDir();
const daemons: Daemon[] = [];
afterAll(async () => {
  await Promise.all(daemons.map((d) => d.stop("SIGKILL")));
  dir.remove();
});

describe("a server restart", () => {
  it("keeps a submitted job, which then runs", async () => {
    const server = new Daemon([
      "server",
      "--store",
      `sqlite:${join(dir.path, "baton.db")}`,
      "--port",
      "0",
    ]);
    daemons.push(server);
    const url = (await server.waitForLog(/"url":"(http:\/\/[^"]+)"/))[1] as string;
    const submitted = await baton(["submit", "--", "sh", "-c", "echo survived"], {
      env: { BATON_SERVER: url },
    });
    expect(submitted.code).toBe(0);
    const id = submitted.stdout.trim();
    const pending = (await (await fetch(`${url}/v1/jobs/${id}`)).json()) as JobJson;
    expect(pending.state).toBe("pending"); // no worker yet

    expect(await server.stop("SIGTERM")).toEqual({ code: 0, signal: null });

    const { daemon, url: newUrl } = await startBaton(["--data-dir", dir.path]);
    daemons.push(daemon);
    const env = { BATON_SERVER: newUrl };
    const job = await eventually(
      async () => {
        const current = (await (await fetch(`${newUrl}/v1/jobs/${id}`)).json()) as JobJson;
        return current.state === "succeeded" ? current : undefined;
      },
      10_000,
      "the job to run after the restart",
    );
    expect(job.createdAt).toBe(pending.createdAt);
    expect((await baton(["logs", id], { env })).stdout).toBe("survived\n");
    expect(await daemon.stop("SIGTERM")).toEqual({ code: 0, signal: null });
  });
});
