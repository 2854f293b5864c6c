import { Command } from "commander";
import type { StatsJson, WorkerJson } from "../../api/poolJson.js";
import type { QueueStats } from "../../core/stats.js";
import { formatDuration } from "../../core/duration.js";
import { UsageError } from "../exit.js";
import { ago, table } from "../format.js";
import { clientCommand, clientOf, printJson } from "./clientCommands.js";

function workerTable(workers: readonly WorkerJson[]): string {
  return table(
    [
      "NAME",
      "STATE",
      "HOST",
      "QUEUES",
      "RUNS",
      "SLOTS",
      "CPUS",
      "MEMORY",
      "RUNNING JOBS",
      "LAST SEEN",
    ],
    workers.map((w) => [
      w.name,
      w.state,
      w.host,
      w.queues === null ? "*" : w.queues.join(","),
      runsOf(w),
      `${w.running}/${w.concurrency}`,
      `${round(w.usedCpus)}/${w.cpus}`,
      w.memoryMb === null ? "-" : `${w.usedMemoryMb}/${w.memoryMb} MiB`,
      w.runningJobs.join(",") || "-",
      ago(w.lastHeartbeatAt),
    ]),
  );
}

/** "shell", the handlers' names, or "*" for a worker that did not say. */
function runsOf(worker: WorkerJson): string {
  if (worker.runs === null) return "*";
  const handlers = worker.runs.handlers.join(",");
  if (worker.runs.shell) return handlers === "" ? "shell" : `shell,${handlers}`;
  return handlers === "" ? "-" : handlers;
}

function round(n: number): number {
  return Math.round(n * 100) / 100;
}

function slotsOf(value: string): number {
  if (!/^\d{1,6}$/.test(value)) {
    throw new UsageError(`slots: expected a whole number of jobs, got "${value}"`);
  }
  return Number(value);
}

export function workersCommand(): Command {
  const workers = new Command("workers")
    .description("the worker pool: list it, resize or drain a worker")
    .addHelpText(
      "after",
      "\nExample:\n  baton workers\n  baton workers resize build-1 8\n  baton workers drain build-1",
    );
  workers.addCommand(
    clientCommand("ls", "list workers with their capacity and running jobs", "  baton workers ls")
      .option("--json", "print the workers as JSON")
      .action(async (flags: { json?: boolean }, command: Command) => {
        const list = await clientOf(command).workers();
        if (flags.json) printJson(list);
        else if (list.length === 0) process.stdout.write("no workers seen in the last day\n");
        else process.stdout.write(`${workerTable(list)}\n`);
      }),
    { isDefault: true },
  );
  workers.addCommand(
    clientCommand(
      "resize",
      "change how many jobs a live worker runs at once (shrinking lets running jobs finish)",
      "  baton workers resize build-1 8",
    )
      .argument("<name>", "worker name")
      .argument("<slots>", "jobs it may run at once")
      .option("--json", "print the worker as JSON")
      .action(async (name: string, slots: string, flags: { json?: boolean }, command: Command) => {
        const worker = await clientOf(command).updateWorker(name, { concurrency: slotsOf(slots) });
        if (flags.json) printJson(worker);
        else process.stdout.write(`${workerTable([worker])}\n`);
      }),
  );
  workers.addCommand(
    clientCommand(
      "drain",
      "let a worker finish its running jobs and take no new ones; it then exits",
      "  baton workers drain build-1",
    )
      .argument("<name>", "worker name")
      .option("--json", "print the worker as JSON")
      .action(async (name: string, flags: { json?: boolean }, command: Command) => {
        const worker = await clientOf(command).updateWorker(name, { drain: true });
        if (flags.json) printJson(worker);
        else process.stdout.write(`${workerTable([worker])}\n`);
      }),
  );
  return workers;
}

function statsRow(name: string, s: QueueStats): string[] {
  const time = (ms: number | null) => (ms === null ? "-" : formatDuration(ms));
  return [
    name,
    String(s.submitted),
    String(s.succeeded),
    String(s.failed),
    String(s.cancelled),
    String(s.running),
    String(s.queued),
    time(s.avgRunMs),
    time(s.p95RunMs),
  ];
}

function statsTable(stats: StatsJson): string {
  const rows = Object.entries(stats.queues).map(([name, s]) => statsRow(name, s));
  rows.push(statsRow("(all)", stats.overall));
  return table(
    ["QUEUE", "SUBMITTED", "SUCCEEDED", "FAILED", "CANCELLED", "RUNNING", "QUEUED", "AVG", "P95"],
    rows,
  );
}

export function statsCommand(): Command {
  return clientCommand(
    "stats",
    "jobs submitted, succeeded, failed and cancelled, running and queued, run times; per queue",
    "  baton stats\n  baton stats --window 1h --json",
  )
    .option("--window <duration>", "count what happened in this window (default 24h)")
    .option("--json", "print the statistics as JSON")
    .action(async (flags: { window?: string; json?: boolean }, command: Command) => {
      const stats = await clientOf(command).stats(flags.window);
      if (flags.json) printJson(stats);
      else process.stdout.write(`since ${stats.since}\n${statsTable(stats)}\n`);
    });
}
