import { type ChildProcess, spawn } from "node:child_process";
import { mkdirSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { fileURLToPath } from "node:url";

export const CLI = fileURLToPath(new URL("../../cli/main.js", import.meta.url));

/** One measured figure: the median of several repetitions, with their spread. */
export interface Figure {
  workload: string;
  system: string;
  unit: string;
  median: number;
  min: number;
  max: number;
  runs: number;
  note?: string;
}

export function figure(
  workload: string,
  system: string,
  unit: string,
  samples: number[],
  note?: string,
): Figure {
  const sorted = [...samples].sort((a, b) => a - b);
  const median = sorted[Math.floor(sorted.length / 2)] ?? 0;
  return {
    workload,
    system,
    unit,
    median,
    min: sorted[0] ?? 0,
    max: sorted.at(-1) ?? 0,
    runs: samples.length,
    ...(note === undefined ? {} : { note }),
  };
}

/**
 * A Baton process started for a benchmark; resolves `ready` with its URL (servers) or "".
 * `until`, when given, is the log message that says it is ready (the URL is still taken from
 * the first line that names one): `baton up` names its URL before its worker runs.
 */
export function startProcess(args: string[], env: Record<string, string> = {}, until?: string) {
  const child = spawn(process.execPath, [CLI, ...args], {
    stdio: ["ignore", "ignore", "pipe"],
    env: { ...process.env, BATON_LOG_FORMAT: "json", BATON_LOG_LEVEL: "info", ...env },
  });
  let log = "";
  const ready = new Promise<string>((resolve, reject) => {
    child.stderr?.on("data", (chunk: Buffer) => {
      if (log.length < 200_000) log += chunk.toString();
      const url = /"url":"(http:\/\/[^"]+)"/.exec(log);
      if (until !== undefined && !log.includes(until)) return;
      if (url?.[1]) resolve(url[1]);
      else if (log.includes("worker running")) resolve("");
    });
    child.once("exit", (code) => reject(new Error(`${args[0]} exited (${code}):\n${log}`)));
  });
  child.stderr?.resume();
  return { child, ready };
}

export async function stopProcess(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return;
  const exited = new Promise((resolve) => child.once("exit", resolve));
  child.kill("SIGTERM");
  await exited;
}

/** Resident memory of a process, in MiB (Linux). */
export function rssMiB(pid: number): number {
  try {
    const status = readFileSync(`/proc/${pid}/status`, "utf8");
    return Number(/VmRSS:\s+(\d+)/.exec(status)?.[1] ?? 0) / 1024;
  } catch {
    return 0;
  }
}

export const format = (value: number) =>
  value >= 100 ? Math.round(value).toLocaleString("en-US") : value.toFixed(1);

export function table(figures: readonly Figure[]): string {
  const rows = figures.map((f) => [
    f.workload,
    f.system,
    `${format(f.median)} ${f.unit}`,
    `${format(f.min)}–${format(f.max)}`,
    String(f.runs),
    f.note ?? "",
  ]);
  const headers = ["workload", "system", "median", "min–max", "runs", "note"];
  const widths = headers.map((h, i) => Math.max(h.length, ...rows.map((r) => (r[i] ?? "").length)));
  const line = (cells: readonly string[]) =>
    cells
      .map((cell, i) => cell.padEnd(widths[i] ?? 0))
      .join("  ")
      .trimEnd();
  return [line(headers), line(widths.map((w) => "-".repeat(w))), ...rows.map(line)].join("\n");
}

export function markdown(figures: readonly Figure[]): string {
  const rows = figures.map(
    (f) =>
      `| ${f.workload} | ${f.system} | ${format(f.median)} ${f.unit} | ${format(f.min)}–${format(f.max)} | ${f.runs} | ${f.note ?? ""} |`,
  );
  return [
    "| workload | system | median | min–max | runs | note |",
    "| --- | --- | --- | --- | --- | --- |",
    ...rows,
  ].join("\n");
}

/**
 * Writes the figures as JSON and Markdown under bench/results/; `summary`, Markdown, goes
 * before the figures and `verdict` after them.
 */
export function save(
  name: string,
  figures: readonly Figure[],
  machine: string,
  summary?: string,
  verdict?: string,
): string {
  const dir = join(process.cwd(), "bench", "results");
  mkdirSync(dir, { recursive: true });
  const when = new Date().toISOString();
  const json = { when, machine, figures, ...(verdict === undefined ? {} : { verdict }) };
  writeFileSync(join(dir, `${name}.json`), JSON.stringify(json, null, 2));
  const intro = summary === undefined ? "" : `${summary}\n\n`;
  const outro = verdict === undefined ? "" : `\n${verdict.replaceAll("\n", "\n\n")}\n`;
  writeFileSync(
    join(dir, `${name}.md`),
    `# ${name}\n\n${when}, ${machine}\n\n${intro}${markdown(figures)}\n${outro}`,
  );
  return dir;
}
