import { spawn } from "node:child_process";
import { writeFileSync } from "node:fs";
import { join } from "node:path";
import { PassThrough, type Readable } from "node:stream";
import type { Job } from "../core/job.js";
import type { Execution, ExecutionRequest, Executor, ExitStatus } from "./executor.js";
import { liveGroupMembers, signalGroup } from "./processGroup.js";

/** How long output pipes may stay open after the job's group is gone (see below). */
const PIPE_DRAIN_MS = 2_000;

/**
 * Runs a shell job in a process group of its own (the child is a session leader), so a
 * stop reaches every process the job started, grandchildren included. When the main
 * process ends, whatever it left behind in its group is stopped too: a job never leaves
 * processes running after it is recorded as finished.
 */
export class ShellExecutor implements Executor {
  start(request: ExecutionRequest): Execution {
    const { file, args } = commandOf(request.job, request.workDir);
    return spawnGroup({
      file,
      args,
      cwd: request.job.cwd ?? request.workDir,
      env: request.env,
      killGraceMs: request.killGraceMs,
    });
  }
}

/** The program and arguments of a shell job; a script is written into the job directory. */
export function commandOf(job: Job, workDir: string): { file: string; args: string[] } {
  if (job.command) {
    const [file, ...args] = job.command as [string, ...string[]];
    return { file, args };
  }
  const scriptPath = join(workDir, ".baton-script.sh");
  writeFileSync(scriptPath, job.script ?? "", { mode: 0o700 });
  return { file: "/bin/sh", args: [scriptPath] };
}

export interface GroupSpawn {
  file: string;
  args: string[];
  cwd: string;
  env: Record<string, string>;
  killGraceMs: number;
}

/**
 * A process started as the leader of a new session, its output on pipes: a ChildProcess
 * spawned detached, or one started by the job spawner (see spawner.ts).
 */
export interface GroupChild {
  readonly pid?: number | undefined;
  readonly stdout: Readable | null;
  readonly stderr: Readable | null;
  /** Set when the process's fate is unknown: why. */
  readonly lostCause?: string | null;
  once(event: "error", listener: (error: NodeJS.ErrnoException) => void): unknown;
  once(
    event: "exit",
    listener: (code: number | null, signal: NodeJS.Signals | null) => void,
  ): unknown;
  once(event: "close", listener: () => void): unknown;
}

/**
 * Starts a program as the leader of a new process group, its output on pipes. When the
 * leader ends, whatever it left behind in its group is stopped too.
 */
export function spawnGroup(spec: GroupSpawn): Execution {
  const child = spawn(spec.file, spec.args, {
    cwd: spec.cwd,
    env: spec.env,
    detached: true,
    stdio: ["ignore", "pipe", "pipe"],
  });
  return superviseGroup(child, spec);
}

/**
 * Watches a group leader started for `spec`: its end is known once it has exited and its
 * pipes are closed; whatever it left behind in its group is then stopped too. Call it
 * before the child can emit anything; its pid may come later (the spawner's answer).
 */
export function superviseGroup(child: GroupChild, spec: GroupSpawn): Execution {
  const { file, killGraceMs } = spec;
  const leader = () => child.pid ?? null;
  let status: ExitStatus | null = null;
  let pipesClosed = false;
  let killTimer: NodeJS.Timeout | null = null;
  let pipeTimer: NodeJS.Timeout | null = null;
  let stopRequested = false;
  let settle: (status: ExitStatus) => void = () => {};
  const done = new Promise<ExitStatus>((resolve) => {
    settle = resolve;
  });

  const finishIfDone = () => {
    if (!status || !pipesClosed || killTimer) return;
    if (pipeTimer) clearTimeout(pipeTimer);
    settle(status);
  };
  // SIGKILL the group after the grace, unless it empties first.
  const escalate = () => {
    const pid = leader();
    if (pid === null || killTimer) return;
    killTimer = setTimeout(() => {
      if (liveGroupMembers(pid).length > 0) signalGroup(pid, "SIGKILL");
      killTimer = null;
      finishIfDone();
    }, killGraceMs);
  };
  // A process that left the group (setsid) could hold the pipes open forever; once the
  // group is dead, stop waiting for it, but never while the reader is paused on purpose.
  const closePipesLater = () => {
    pipeTimer = setTimeout(() => {
      if ([child.stdout, child.stderr].some((stream) => stream?.isPaused())) {
        closePipesLater();
        return;
      }
      child.stdout?.destroy();
      child.stderr?.destroy();
    }, killGraceMs + PIPE_DRAIN_MS);
  };

  child.once("error", (error) => {
    // Raised when the process could not be spawned at all (no such program, bad cwd).
    if (leader() === null) {
      settle({ exitCode: null, signal: null, spawnError: spawnMessage(file, error) });
    }
  });
  child.once("exit", (exitCode, signal) => {
    status = { exitCode, signal, spawnError: null };
    if (child.lostCause) status.lost = child.lostCause;
    const pid = leader();
    if (pid !== null && signalGroup(pid, "SIGTERM")) escalate();
    closePipesLater();
  });
  child.once("close", () => {
    pipesClosed = true;
    const pid = leader();
    if (killTimer && pid !== null && liveGroupMembers(pid).length === 0) {
      clearTimeout(killTimer);
      killTimer = null;
    }
    finishIfDone();
  });

  return {
    get pid() {
      return leader();
    },
    stdout: child.stdout ?? new PassThrough().end(),
    stderr: child.stderr ?? new PassThrough().end(),
    done,
    stop: () => {
      // Once the process has ended, its group is gone or already being stopped: never
      // signal a group id that could by now belong to someone else.
      const pid = leader();
      if (pid === null || stopRequested || status !== null) return;
      stopRequested = true;
      signalGroup(pid, "SIGTERM");
      escalate();
    },
  };
}

function spawnMessage(file: string, error: NodeJS.ErrnoException): string {
  switch (error.code) {
    case "ENOENT":
      return `${file}: command not found (or its working directory is missing)`;
    case "EACCES":
      return `${file}: permission denied`;
    default:
      return `could not start ${file}: ${error.message}`;
  }
}
