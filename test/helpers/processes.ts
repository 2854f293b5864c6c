import { type ChildProcess, execFileSync, spawn } from "node:child_process";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";

export const CLI = resolve(import.meta.dirname, "../../dist/cli/main.js");

export function tempDir(prefix = "baton-test-"): { path: string; remove: () => void } {
  const path = mkdtempSync(join(tmpdir(), prefix));
  return { path, remove: () => rmSync(path, { recursive: true, force: true }) };
}

export interface CliResult {
  code: number | null;
  signal: NodeJS.Signals | null;
  stdout: string;
  stderr: string;
}

/** Runs `baton ARGS…` to completion, as a user would from a shell. */
export function baton(
  args: readonly string[],
  options: { env?: Record<string, string>; input?: string; cwd?: string } = {},
): Promise<CliResult> {
  return new Promise((resolvePromise, reject) => {
    const child = spawn(process.execPath, [CLI, ...args], {
      env: { ...process.env, ...options.env },
      cwd: options.cwd,
      stdio: ["pipe", "pipe", "pipe"],
    });
    let stdout = "";
    let stderr = "";
    child.stdout.on("data", (chunk: Buffer) => {
      stdout += chunk.toString();
    });
    child.stderr.on("data", (chunk: Buffer) => {
      stderr += chunk.toString();
    });
    child.on("error", reject);
    child.on("close", (code, signal) => resolvePromise({ code, signal, stdout, stderr }));
    child.stdin.end(options.input ?? "");
  });
}

/** A long-running Baton process (up, server, worker) with its output collected. */
export class Daemon {
  readonly child: ChildProcess;
  stderr = "";
  stdout = "";
  readonly exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;

  constructor(args: readonly string[], env: Record<string, string> = {}) {
    this.child = spawn(process.execPath, [CLI, ...args], {
      env: { ...process.env, BATON_LOG_LEVEL: "info", ...env },
      stdio: ["ignore", "pipe", "pipe"],
    });
    this.child.stdout?.on("data", (chunk: Buffer) => {
      this.stdout += chunk.toString();
    });
    this.child.stderr?.on("data", (chunk: Buffer) => {
      this.stderr += chunk.toString();
    });
    this.exited = new Promise((resolvePromise) =>
      this.child.once("exit", (code, signal) => resolvePromise({ code, signal })),
    );
  }

  get pid(): number {
    if (this.child.pid === undefined) throw new Error("daemon did not start");
    return this.child.pid;
  }

  /** Resolves when a log line matching `pattern` appears on stderr; rejects if it exits first. */
  waitForLog(pattern: RegExp, timeoutMs = 15_000): Promise<RegExpMatchArray> {
    return new Promise((resolvePromise, reject) => {
      const check = () => {
        const match = this.stderr.match(pattern);
        if (match) {
          cleanup();
          resolvePromise(match);
        }
      };
      const onExit = () => {
        cleanup();
        reject(new Error(`daemon exited before logging ${pattern}:\n${this.stderr}`));
      };
      const timer = setTimeout(() => {
        cleanup();
        reject(new Error(`timed out waiting for ${pattern}:\n${this.stderr}`));
      }, timeoutMs);
      const cleanup = () => {
        clearTimeout(timer);
        this.child.stderr?.off("data", check);
        this.child.off("exit", onExit);
      };
      this.child.stderr?.on("data", check);
      this.child.once("exit", onExit);
      check();
    });
  }

  async stop(
    signal: NodeJS.Signals = "SIGTERM",
  ): Promise<{ code: number | null; signal: NodeJS.Signals | null }> {
    if (this.child.exitCode === null && this.child.signalCode === null) this.child.kill(signal);
    return this.exited;
  }
}

/** `baton up` on a free port in a fresh data directory; resolves once it serves requests. */
export async function startBaton(
  args: readonly string[] = [],
  env: Record<string, string> = {},
): Promise<{ daemon: Daemon; url: string }> {
  const daemon = new Daemon(["up", "--port", "0", ...args], env);
  const match = await daemon.waitForLog(/"url":"(http:\/\/[^"]+)"/);
  return { daemon, url: match[1] as string };
}

/** Pids of live (not zombie) processes in a process group, read with ps. */
export function liveProcessesInGroup(pgid: number): number[] {
  const out = execFileSync("ps", ["-e", "-o", "pid=,pgid=,stat="], { encoding: "utf8" });
  return out
    .split("\n")
    .map((line) => line.trim().split(/\s+/))
    .filter(
      ([, group, stat]) => Number(group) === pgid && stat !== undefined && !stat.startsWith("Z"),
    )
    .map(([pid]) => Number(pid));
}

/** Polls `check` until it returns a value (not undefined) or the time runs out. */
export async function eventually<T>(
  check: () => Promise<T | undefined> | T | undefined,
  timeoutMs = 10_000,
  what = "condition",
): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const value = await check();
    if (value !== undefined) return value;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 25));
  }
}

/** `baton server` on a free port over `store`; resolves with its URL once it serves. */
export async function startServerDaemon(
  store: string,
  args: readonly string[] = [],
): Promise<{ daemon: Daemon; url: string }> {
  const daemon = new Daemon(["server", "--store", store, "--port", "0", ...args]);
  try {
    const match = await daemon.waitForLog(/"url":"(http:\/\/[^"]+)"/);
    return { daemon, url: match[1] as string };
  } catch (error) {
    await daemon.stop("SIGKILL");
    throw error;
  }
}

/** `baton worker NAME` over `store`, its state in `stateDir`; resolves once it claims. */
export async function startWorkerDaemon(
  store: string,
  name: string,
  stateDir: string,
  args: readonly string[] = [],
): Promise<Daemon> {
  const daemon = new Daemon([
    "worker",
    "--store",
    store,
    "--name",
    name,
    "--state-dir",
    stateDir,
    ...args,
  ]);
  await daemon.waitForLog(/worker running/);
  return daemon;
}
