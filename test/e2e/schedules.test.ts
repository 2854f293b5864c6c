import { join } from "node:path";
import { afterEach, describe, expect, it } from "vitest";
import type { JobJson } from "../../src/api/jobJson.js";
import type { ScheduleJson } from "../../src/api/scheduleJson.js";
import {
  baton,
  type Daemon,
  eventually,
  startServerDaemon,
  startWorkerDaemon,
  tempDir,
} from "../helpers/processes.js";
import { backends } from "../helpers/stores.js";

const SECOND = 1_000;
const RUN_FOR_MS = 4_500;

describe.each(await backends())("cron schedules on two servers over one $name store", (backend) => {
  const dir = tempDir();
  const daemons: Daemon[] = [];
  afterEach(async () => {
    await Promise.all(daemons.map((d) => d.stop("SIGKILL")));
    await backend.teardown();
    dir.remove();
  });

  it("create each firing exactly once, and run it", async () => {
    await backend.setup();
    const { store, args } = backend.url();
    // A short interval makes the two servers race for the same firings often; at debug
    // level each logs the firings it handled.
    const serverArgs = [...args, "--schedule-interval", "100ms", "--log-level", "debug"];
    const [servers, worker] = await Promise.all([
      Promise.all([startServerDaemon(store, serverArgs), startServerDaemon(store, serverArgs)]),
      startWorkerDaemon(store, "w1", join(dir.path, "w1"), args),
    ]);
    daemons.push(...servers.map((s) => s.daemon), worker);
    const [first, second] = servers.map((s) => ({ BATON_SERVER: s.url }));

    const addedAt = Date.now();
    const added = await baton(
      ["schedules", "add", "tick", "--cron", "*/1 * * * * *", "--", "echo", "tick"],
      { env: first },
    );
    expect(added.code, added.stderr).toBe(0);
    const [bad] = await Promise.all([
      baton(["schedules", "add", "bad", "--cron", "* 25 * * *", "--", "true"], { env: first }),
      new Promise((resolve) => setTimeout(resolve, RUN_FOR_MS)),
    ]);
    expect(bad.code).toBe(2);
    expect(bad.stderr).toMatch(/cron: .*hour/);
    const paused = await baton(["schedules", "pause", "tick", "--json"], { env: second });
    const pausedAt = Date.now();
    expect(paused.code, paused.stderr).toBe(0);
    const schedule = JSON.parse(paused.stdout) as ScheduleJson;
    expect(schedule).toMatchObject({ name: "tick", paused: true, missed: "skip" });

    // The last firings' jobs may still be running.
    const jobs = await eventually(
      async () => {
        const response = await fetch(`${servers[1]?.url}/v1/jobs?limit=1000`);
        const page = (await response.json()) as { jobs: JobJson[] };
        return page.jobs.every((job) => job.state === "succeeded") ? page.jobs : undefined;
      },
      5_000,
      "every fired job to succeed",
    );
    const keys = jobs.map((job) => job.idempotencyKey ?? "");
    expect(new Set(keys).size).toBe(jobs.length);
    expect(jobs.every((job) => job.labels.schedule === "tick")).toBe(true);
    const times = keys
      .map((key) => Date.parse(key.replace(/^schedule:tick:/, "")))
      .sort((a, b) => a - b);
    expect(times.length).toBeGreaterThanOrEqual(3);
    // Only seconds between the schedule's creation and its pause fire (the CLI's own start
    // may take over a second on a loaded machine, so the bound is measured, not assumed).
    expect(times[0]).toBeGreaterThanOrEqual(addedAt);
    expect(times.at(-1)).toBeLessThanOrEqual(pausedAt);
    // One job per second, none missing between the first and the last.
    times.forEach((time, i) => expect(time - (times[0] ?? 0)).toBe(i * SECOND));
    expect(jobs.every((job) => Date.parse(job.runAt) % SECOND === 0)).toBe(true);
    expect(schedule.lastJobId).not.toBeNull();
    // Between them, the servers handled each firing once.
    const handled = () =>
      servers
        .map((s) => s.daemon.stderr.match(/"schedule fired"/g)?.length ?? 0)
        .reduce((a, b) => a + b);
    await eventually(() => (handled() >= jobs.length ? true : undefined), 2_000, "firing logs");
    expect(handled()).toBe(jobs.length);

    const removed = await baton(["schedules", "rm", "tick"], { env: second });
    expect(removed.code).toBe(0);
    const listed = await baton(["schedules", "ls", "--json"], { env: first });
    expect(JSON.parse(listed.stdout)).toEqual([]);

    await checkHttpApi(servers[0]?.url ?? "");
  });
});

/** The HTTP contract: create or replace, read, pause, remove; strict validation. */
async function checkHttpApi(url: string): Promise<void> {
  const call = (method: string, path: string, body?: unknown) =>
    fetch(`${url}/v1/schedules${path}`, {
      method,
      headers: body === undefined ? {} : { "content-type": "application/json" },
      body: body === undefined ? null : JSON.stringify(body),
    });
  const nightly = { cron: "0 3 * * *", job: { command: ["./backup.sh"] } };

  const badCron = await call("PUT", "/nightly", { ...nightly, cron: "0 3 * *" });
  expect(badCron.status).toBe(400);
  expect(badCron.headers.get("content-type")).toMatch(/application\/problem\+json/);
  const [cronError, ...others] = (
    (await badCron.json()) as { errors: Array<{ field: string; message: string }> }
  ).errors;
  expect(others).toEqual([]);
  expect(cronError?.field).toBe("cron");
  expect(cronError?.message).toMatch(/five, six, or seven/);
  const badJob = await call("PUT", "/nightly", { ...nightly, job: { command: "x" }, extra: 1 });
  expect(badJob.status).toBe(400);
  const fields = ((await badJob.json()) as { errors: Array<{ field: string }> }).errors;
  expect(fields.map((e) => e.field).sort()).toEqual(["extra", "job.command"]);

  expect((await call("PUT", "/nightly", nightly)).status).toBe(201);
  const replaced = await call("PUT", "/nightly", { ...nightly, missed: "run-once" });
  expect(replaced.status).toBe(200);
  const schedule = (await replaced.json()) as ScheduleJson;
  expect(schedule.nextFireAt).toMatch(/T03:00:00\.000Z$/);
  expect(schedule).toMatchObject({
    name: "nightly",
    cron: "0 3 * * *",
    timezone: "UTC",
    missed: "run-once",
    paused: false,
    job: { command: ["./backup.sh"] },
    lastFiredAt: null,
    lastJobId: null,
  });
  const patched = await call("PATCH", "/nightly", { paused: true });
  expect(((await patched.json()) as ScheduleJson).paused).toBe(true);
  expect(((await (await call("GET", "/nightly")).json()) as ScheduleJson).paused).toBe(true);
  expect((await call("DELETE", "/nightly")).status).toBe(204);
  const gone = await call("DELETE", "/nightly");
  expect(gone.status).toBe(404);
  expect(((await gone.json()) as { code: string }).code).toBe("schedule_not_found");
  expect((await call("PATCH", "/nightly", { paused: false })).status).toBe(404);
}
