import { appendFileSync, readFileSync, rmSync } from "node:fs";
import { liveProcessesByGroup, readProcStat, signalGroup } from "../executors/processGroup.js";
import type { LeaseTable } from "./leaseTable.js";

/**
 * The watchdog beside a worker's jobs: a small process, started by the worker in a session
 * of its own so that it survives the worker's death, that stops any job whose lease is
 * about to expire unrenewed — SIGTERM at expiry minus the kill grace, SIGKILL at expiry.
 * A job's process therefore never outlives its lease, and the reaper can hand the job to
 * another worker without two copies running. It exits once its worker is gone and no job
 * it watches is alive.
 *
 * Usage: node watchdogMain.js LEASE_TABLE_FILE
 */
const file = process.argv[2];
if (!file) {
  process.stderr.write("usage: watchdogMain LEASE_TABLE_FILE\n");
  process.exit(2);
}

const killing = new Map<number, { killAt: number; startTime: number | null }>();

/** One line per action, beside the lease table, for the operator who wonders what happened. */
function note(message: string): void {
  try {
    appendFileSync(`${file as string}.log`, `${new Date().toISOString()} ${message}\n`);
  } catch {
    // Nowhere else to report to: the watchdog has no terminal and its worker may be gone.
  }
}

function read(): LeaseTable | null {
  try {
    return JSON.parse(readFileSync(file as string, "utf8")) as LeaseTable;
  } catch {
    return null;
  }
}

function alive(pid: number, startTime: number | null): boolean {
  const stat = readProcStat(pid);
  if (!stat || stat.state === "Z") return false;
  return startTime === null || stat.startTime === startTime;
}

function tick(): void {
  const table = read();
  const now = Date.now();
  const workerAlive = table !== null && alive(table.workerPid, table.workerStartTime);
  let watching = 0;
  const groups = liveProcessesByGroup();
  for (const job of table?.jobs ?? []) {
    if (!groups.has(job.pgid)) continue;
    // The group id cannot have been reused while members remain, but its first members may be
    // unrelated to ours if the leader died long ago and the id came round again: the leader's
    // start time tells, when the leader is still there.
    const leader = readProcStat(job.pgid);
    if (leader && job.leaderStartTime !== null && leader.startTime !== job.leaderStartTime)
      continue;
    watching++;
    const grace = table?.killGraceMs ?? 0;
    // Keyed by group and leader start time: a group id reused by a later job is another job.
    const stopping = killing.get(job.pgid);
    const current = stopping && stopping.startTime === job.leaderStartTime ? stopping : undefined;
    if (!current && now >= job.expiresAt - grace) {
      signalGroup(job.pgid, "SIGTERM");
      killing.set(job.pgid, { killAt: now + grace, startTime: job.leaderStartTime });
      note(
        `SIGTERM job ${job.jobId} attempt ${job.attempt} (group ${job.pgid}): lease expires ` +
          `${new Date(job.expiresAt).toISOString()} unrenewed`,
      );
    } else if (current && now >= current.killAt) {
      signalGroup(job.pgid, "SIGKILL");
      note(
        `SIGKILL job ${job.jobId} attempt ${job.attempt} (group ${job.pgid}): still running after the grace`,
      );
    }
  }
  if (!workerAlive && watching === 0) {
    rmSync(file as string, { force: true });
    process.exit(0);
  }
}

const interval = Number(process.env.BATON_WATCHDOG_TICK_MS ?? 200);
setInterval(tick, interval);
tick();
