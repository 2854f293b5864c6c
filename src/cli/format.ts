import type { JobJson } from "../api/jobJson.js";
import { formatDuration } from "../core/duration.js";

/** A plain left-aligned table, as `ps` or `kubectl get` print. */
export function table(headers: readonly string[], rows: readonly (readonly string[])[]): string {
  const widths = headers.map((header, i) =>
    Math.max(header.length, ...rows.map((row) => (row[i] ?? "").length)),
  );
  const line = (cells: readonly string[]) =>
    cells
      .map((cell, i) => (i === cells.length - 1 ? cell : cell.padEnd(widths[i] ?? 0)))
      .join("  ")
      .trimEnd();
  return [line(headers), ...rows.map(line)].join("\n");
}

export function describeCommand(
  job: Partial<Pick<JobJson, "command" | "script" | "handler">>,
): string {
  if (job.command) return job.command.map(shellQuote).join(" ");
  if (job.script) return `script: ${job.script.split("\n")[0] ?? ""}`;
  return job.handler ?? "";
}

function shellQuote(arg: string): string {
  return /^[A-Za-z0-9_@%+=:,./-]+$/.test(arg) ? arg : `'${arg.replace(/'/g, "'\\''")}'`;
}

export function truncate(text: string, max: number): string {
  return text.length <= max ? text : `${text.slice(0, max - 1)}…`;
}

export function runTime(job: { startedAt: string | null; finishedAt: string | null }): string {
  if (!job.startedAt) return "-";
  const end = job.finishedAt ? Date.parse(job.finishedAt) : Date.now();
  return formatDuration(end - Date.parse(job.startedAt));
}

export function ago(iso: string): string {
  return `${formatDuration(Math.max(0, Date.now() - Date.parse(iso)))} ago`;
}

/** How a job ended, in a few words: "exit 3", "SIGKILL", "timeout". */
export function outcome(job: {
  state: string;
  exitCode: number | null;
  signal: string | null;
  failure: { reason: string; message: string } | null;
}): string {
  if (job.failure && job.failure.reason !== "exit_code") return job.failure.reason;
  if (job.signal) return job.signal;
  if (job.exitCode !== null) return `exit ${job.exitCode}`;
  return "-";
}

export function jobTable(jobs: readonly JobJson[]): string {
  return table(
    ["ID", "STATE", "QUEUE", "PRI", "ATTEMPT", "CREATED", "RUNTIME", "RESULT", "COMMAND"],
    jobs.map((job) => [
      job.id,
      job.state,
      job.queue,
      String(job.priority),
      `${job.attempt}/${job.maxAttempts}`,
      ago(job.createdAt),
      runTime(job),
      outcome(job),
      truncate(describeCommand(job), 60),
    ]),
  );
}

function outputStats(job: JobJson): string {
  const { storedBytes, droppedLines, droppedBytes } = job.output;
  const stored = `${storedBytes} bytes stored`;
  if (droppedLines === 0) return stored;
  return `${stored}, ${droppedLines} lines (${droppedBytes} bytes) over the cap of ${job.maxLogBytes} not stored`;
}

export function jobDetails(job: JobJson): string {
  const fields: Array<[string, string]> = [
    ["id", job.id],
    [
      "state",
      job.cancelRequested && job.state === "running" ? "running (cancel requested)" : job.state,
    ],
    ["queue", job.queue],
    ["priority", String(job.priority)],
    ["command", describeCommand(job)],
    [
      "resources",
      `${job.resources.cpus} cpu${job.resources.memoryMb ? `, ${job.resources.memoryMb} MiB` : ""}`,
    ],
    ["timeout", job.timeoutMs === null ? "none" : formatDuration(job.timeoutMs)],
    ["attempts", `${job.attempt} of at most ${job.maxAttempts}`],
    ["created", job.createdAt],
    ["run at", job.runAt],
    ["started", job.startedAt ?? "-"],
    ["finished", job.finishedAt ?? "-"],
    ["runtime", runTime(job)],
    ["worker", job.workerId ?? "-"],
    ["exit code", job.exitCode === null ? "-" : String(job.exitCode)],
    ["signal", job.signal ?? "-"],
    ["progress", job.progress === null ? "-" : `${job.progress}%`],
    ["output", outputStats(job)],
  ];
  if (job.failure) fields.push(["failure", `${job.failure.reason}: ${job.failure.message}`]);
  if (job.idempotencyKey) fields.push(["idempotency key", job.idempotencyKey]);
  for (const [key, value] of Object.entries(job.labels)) fields.push([`label ${key}`, value]);
  const width = Math.max(...fields.map(([key]) => key.length));
  const lines = fields.map(([key, value]) => `${`${key}:`.padEnd(width + 2)}${value}`);
  const attempts = job.attempts ?? [];
  if (attempts.length > 0) {
    lines.push(
      "",
      table(
        ["ATTEMPT", "WORKER", "STARTED", "RUNTIME", "OUTCOME", "REASON"],
        attempts.map((a) => [
          String(a.attempt),
          a.workerId,
          a.startedAt,
          runTime(a),
          a.finishedAt === null ? "running" : a.failure ? a.failure.reason : "succeeded",
          [
            a.replayOf === null ? "" : `replay of attempt ${a.replayOf}`,
            a.failure?.message ?? (a.exitCode !== null ? `exit ${a.exitCode}` : ""),
          ]
            .filter((part) => part !== "")
            .join("; "),
        ]),
      ),
    );
  }
  return lines.join("\n");
}
