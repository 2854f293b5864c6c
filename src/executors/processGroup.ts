import { existsSync, readdirSync, readFileSync } from "node:fs";

/** Signals a whole process group; false when the group no longer exists. */
export function signalGroup(pgid: number, signal: NodeJS.Signals | 0): boolean {
  try {
    process.kill(-pgid, signal);
    return true;
  } catch (error) {
    // EPERM: the group still exists but holds only processes we may not signal (setuid).
    return (error as NodeJS.ErrnoException).code !== "ESRCH";
  }
}

/**
 * Pids of the group's processes that are still alive. Zombies do not count: in a container
 * whose init does not reap orphans they linger, yet run nothing. Without /proc (not Linux),
 * a signal-0 probe answers, counting zombies too.
 */
export function liveGroupMembers(pgid: number): number[] {
  if (!HAS_PROC) return signalGroup(pgid, 0) ? [pgid] : [];
  return liveProcessesByGroup().get(pgid) ?? [];
}

const HAS_PROC = existsSync("/proc/self/stat");

/** Every live (not zombie) process, by process group, from one pass over /proc. */
export function liveProcessesByGroup(): Map<number, number[]> {
  const groups = new Map<number, number[]>();
  let entries: string[];
  try {
    entries = readdirSync("/proc");
  } catch {
    return groups;
  }
  for (const entry of entries) {
    if (!/^\d+$/.test(entry)) continue;
    const stat = readProcStat(entry);
    if (!stat || stat.state === "Z" || stat.state === "X") continue;
    const members = groups.get(stat.pgrp);
    if (members) members.push(Number(entry));
    else groups.set(stat.pgrp, [Number(entry)]);
  }
  return groups;
}

export interface ProcStat {
  state: string;
  ppid: number;
  pgrp: number;
  /** Start time in clock ticks after boot: with the pid, identifies a process for good. */
  startTime: number;
}

export function readProcStat(pid: number | string): ProcStat | null {
  let text: string;
  try {
    text = readFileSync(`/proc/${pid}/stat`, "utf8");
  } catch {
    return null;
  }
  // "pid (comm) state ppid pgrp session tty tpgid flags minflt cminflt majflt cmajflt utime
  //  stime cutime cstime priority nice threads itrealvalue starttime ..." — comm may hold
  // spaces and parentheses, so fields are counted from the last ")".
  const fields = text.slice(text.lastIndexOf(")") + 2).split(" ");
  const state = fields[0];
  if (state === undefined) return null;
  return {
    state,
    ppid: Number(fields[1]),
    pgrp: Number(fields[2]),
    startTime: Number(fields[19]),
  };
}
