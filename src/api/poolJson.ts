import type { WorkerInfo } from "../core/pool.js";
import type { Stats } from "../core/stats.js";
import { iso } from "./jobJson.js";

export type WorkerJson = Omit<WorkerInfo, "startedAt" | "lastHeartbeatAt"> & {
  startedAt: string;
  lastHeartbeatAt: string;
};

export function workerToJson(worker: WorkerInfo): WorkerJson {
  return {
    ...worker,
    startedAt: iso(worker.startedAt),
    lastHeartbeatAt: iso(worker.lastHeartbeatAt),
  };
}

export type StatsJson = Omit<Stats, "since"> & { since: string };

export function statsToJson(stats: Stats): StatsJson {
  return { ...stats, since: iso(stats.since) };
}
