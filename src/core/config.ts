import { parseDuration } from "./duration.js";
import { DEFAULT_IDEMPOTENCY_RETENTION_MS } from "./job.js";

/**
 * Every setting Baton has, defined once: its type, default, environment variable
 * (BATON_ + the name in upper snake case) and command-line flag. Flags override the
 * environment, which overrides the defaults. `loadConfig` is the one place they are read.
 */

/** Facts about the machine that some defaults depend on; injected to keep this module pure. */
export interface Machine {
  cpus: number;
  memoryMb: number;
  hostname: string;
  pid: number;
}

interface SettingDef<T> {
  /** Flag as commander spells it, e.g. "--lease-ttl <duration>". */
  flag: string;
  description: string;
  default: T | ((machine: Machine) => T);
  /** Parses a flag or environment value; returns an error message for a bad one. */
  parse: (raw: string) => T | { error: string };
}

function integer(min: number, max = Number.MAX_SAFE_INTEGER) {
  return (raw: string): number | { error: string } => {
    if (!/^-?\d+$/.test(raw.trim())) return { error: "must be an integer" };
    const n = Number(raw);
    if (n < min || n > max) return { error: `must be between ${min} and ${max}` };
    return n;
  };
}

function positiveNumber(raw: string): number | { error: string } {
  const n = Number(raw);
  if (raw.trim() === "" || !Number.isFinite(n) || n <= 0) return { error: "must be a number > 0" };
  return n;
}

function duration(minMs: number) {
  return (raw: string): number | { error: string } => {
    const ms = parseDuration(raw);
    if (ms === null) return { error: "must be a duration such as 500ms, 30s, 5m or 1h" };
    if (ms < minMs) return { error: `must be at least ${minMs}ms` };
    return ms;
  };
}

function text(raw: string): string | { error: string } {
  return raw === "" ? { error: "must not be empty" } : raw;
}

function optionalText(raw: string): string | null {
  return raw === "" ? null : raw;
}

function list(raw: string): string[] | null | { error: string } {
  const items = raw
    .split(",")
    .map((item) => item.trim())
    .filter((item) => item !== "");
  if (items.length === 0 || items.includes("*")) return null;
  return items;
}

function url(raw: string): string | { error: string } {
  try {
    new URL(raw);
    return raw.replace(/\/+$/, "");
  } catch {
    return { error: "must be a URL such as http://127.0.0.1:7070" };
  }
}

const LOG_LEVELS = ["fatal", "error", "warn", "info", "debug", "trace", "silent"] as const;
function logLevel(raw: string): (typeof LOG_LEVELS)[number] | { error: string } {
  const found = LOG_LEVELS.find((level) => level === raw);
  return found ?? { error: `must be one of ${LOG_LEVELS.join(", ")}` };
}

function define<T>(def: SettingDef<T>): SettingDef<T> {
  return def;
}

export const SETTINGS = {
  port: define({
    flag: "--port <port>",
    description: "HTTP port to listen on (0 picks a free one)",
    default: 7070,
    parse: integer(0, 65535),
  }),
  host: define({
    flag: "--host <host>",
    description: "address to listen on",
    default: "127.0.0.1",
    parse: text,
  }),
  dataDir: define({
    flag: "--data-dir <dir>",
    description: "where `baton up` keeps its database and worker state",
    default: "./.baton",
    parse: text,
  }),
  store: define<string | null>({
    flag: "--store <url>",
    description: "store URL: sqlite:PATH (default sqlite:<data-dir>/baton.db)",
    default: null,
    parse: text,
  }),
  server: define({
    flag: "--server <url>",
    description: "Baton server for client commands, and for `baton worker --server`",
    default: "http://127.0.0.1:7070",
    parse: url,
  }),
  token: define<string | null>({
    flag: "--token <token>",
    description: "bearer token the server requires (none by default)",
    default: null,
    parse: optionalText,
  }),
  leaseTtlMs: define({
    flag: "--lease-ttl <duration>",
    description: "how long a claim holds without a heartbeat",
    default: 30_000,
    parse: duration(100),
  }),
  heartbeatIntervalMs: define({
    flag: "--heartbeat-interval <duration>",
    description: "how often a worker renews its leases",
    default: 10_000,
    parse: duration(10),
  }),
  maxHeartbeatFailures: define({
    flag: "--max-heartbeat-failures <n>",
    description: "consecutive failed heartbeats before a worker aborts the job",
    default: 3,
    parse: integer(1, 1000),
  }),
  shutdownGraceMs: define({
    flag: "--shutdown-grace <duration>",
    description: "time running jobs get to finish on SIGTERM before they are released",
    default: 30_000,
    parse: duration(0),
  }),
  killGraceMs: define({
    flag: "--kill-grace <duration>",
    description: "time between SIGTERM and SIGKILL when a job is stopped",
    default: 5_000,
    parse: duration(0),
  }),
  flushIntervalMs: define({
    flag: "--flush-interval <duration>",
    description: "how often buffered job output is written to the store",
    default: 1_000,
    parse: duration(1),
  }),
  flushMaxEvents: define({
    flag: "--flush-max-events <n>",
    description: "buffered output lines that trigger a write before the interval",
    default: 50,
    parse: integer(1),
  }),
  maxBufferedEvents: define({
    flag: "--max-buffered-events <n>",
    description: "buffered output lines at which the job's pipes stop being read",
    default: 10_000,
    parse: integer(1),
  }),
  maxBodyBytes: define({
    flag: "--max-body-bytes <bytes>",
    description: "largest accepted HTTP request body",
    default: 1_048_576,
    parse: integer(1),
  }),
  concurrency: define({
    flag: "--concurrency <n>",
    description: "jobs a worker runs at once",
    default: 16,
    parse: integer(1, 100_000),
  }),
  cpus: define({
    flag: "--cpus <n>",
    description: "CPUs a worker offers to jobs (default: the machine's)",
    default: (machine: Machine) => machine.cpus,
    parse: positiveNumber,
  }),
  memoryMb: define({
    flag: "--memory <mb>",
    description: "memory in MiB a worker offers to jobs (default: the machine's)",
    default: (machine: Machine) => machine.memoryMb,
    parse: integer(1),
  }),
  queues: define<string[] | null>({
    flag: "--queues <list>",
    description: "comma-separated queues a worker serves (default: all)",
    default: null,
    parse: list,
  }),
  name: define({
    flag: "--name <name>",
    description: "worker identity (default: host-pid)",
    default: (machine: Machine) => `${machine.hostname}-${machine.pid}`,
    parse: text,
  }),
  handlers: define<string | null>({
    flag: "--handlers <module>",
    description:
      "run the handler jobs of this module's handlers (export const handlers = defineHandlers({…})) instead of shell jobs",
    default: null,
    parse: text,
  }),
  isolation: define<"inline" | "thread">({
    flag: "--isolation <mode>",
    description: "where --handlers run: inline (this event loop) or thread (a worker thread each)",
    default: "inline",
    parse: (raw) =>
      raw === "inline" || raw === "thread" ? raw : { error: "must be inline or thread" },
  }),
  stateDir: define<string | null>({
    flag: "--state-dir <dir>",
    description: "worker state and job directories (default: <data-dir>/workers/<name>)",
    default: null,
    parse: text,
  }),
  pollIntervalMs: define({
    flag: "--poll-interval <duration>",
    description: "safety-net poll for work when no notification arrives",
    default: 1_000,
    parse: duration(10),
  }),
  schema: define({
    flag: "--schema <name>",
    description: "PostgreSQL schema holding Baton's tables (created and migrated at start)",
    default: "baton",
    parse: (raw) =>
      /^[a-z_][a-z0-9_]{0,39}$/.test(raw)
        ? raw
        : { error: "must be lower-case letters, digits and _, starting with a letter or _" },
  }),
  logRetentionMs: define({
    flag: "--log-retention <duration>",
    description: "remove the output of jobs finished longer ago than this",
    default: 7 * 86_400_000,
    parse: duration(1_000),
  }),
  idempotencyRetentionMs: define({
    flag: "--idempotency-retention <duration>",
    description: "how long a finished job keeps its idempotency key (a resubmit returns it)",
    default: DEFAULT_IDEMPOTENCY_RETENTION_MS,
    parse: duration(0),
  }),
  reapIntervalMs: define({
    flag: "--reap-interval <duration>",
    description: "how often expired leases are looked for",
    default: 1_000,
    parse: duration(10),
  }),
  scheduleIntervalMs: define({
    flag: "--schedule-interval <duration>",
    description: "how often a server looks for cron schedules that are due",
    default: 1_000,
    parse: duration(10),
  }),
  logFormat: define<"auto" | "json" | "pretty">({
    flag: "--log-format <format>",
    description: "json, pretty, or auto (pretty on a terminal, json otherwise)",
    default: "auto",
    parse: (raw) =>
      raw === "auto" || raw === "json" || raw === "pretty"
        ? raw
        : { error: "must be auto, json or pretty" },
  }),
  logLevel: define<(typeof LOG_LEVELS)[number]>({
    flag: "--log-level <level>",
    description: "fatal, error, warn, info, debug, trace or silent",
    default: "info",
    parse: logLevel,
  }),
};

type Settings = typeof SETTINGS;
export type SettingName = keyof Settings;
export type Config = {
  [K in SettingName]: Settings[K] extends SettingDef<infer T> ? T : never;
};

/** BATON_ + the setting's name in upper snake case: leaseTtlMs -> BATON_LEASE_TTL_MS. */
export function envName(name: SettingName): string {
  return `BATON_${name.replace(/([a-z0-9])([A-Z])/g, "$1_$2").toUpperCase()}`;
}

/** The long flag's name without dashes or argument, as commander keys it: "leaseTtl". */
export function flagKey(name: SettingName): string {
  const long = SETTINGS[name].flag.split(" ")[0] ?? "";
  return long.replace(/^--/, "").replace(/-([a-z])/g, (_, c: string) => c.toUpperCase());
}

export class ConfigError extends Error {
  constructor(message: string) {
    super(message);
    this.name = "ConfigError";
  }
}

export interface ConfigSources {
  env: Readonly<Record<string, string | undefined>>;
  /** Flag values as given on the command line, keyed as `flagKey` names them. */
  flags: Readonly<Record<string, unknown>>;
  machine: Machine;
}

export function loadConfig(sources: ConfigSources): Config {
  const config: Record<string, unknown> = {};
  for (const name of Object.keys(SETTINGS) as SettingName[]) {
    const def = SETTINGS[name] as SettingDef<unknown>;
    const flagValue = sources.flags[flagKey(name)];
    const envValue = sources.env[envName(name)];
    let value: unknown;
    if (typeof flagValue === "string") {
      value = checked(
        def.parse(flagValue),
        `${def.flag.split(" ")[0]} ${JSON.stringify(flagValue)}`,
      );
    } else if (envValue !== undefined && envValue !== "") {
      value = checked(def.parse(envValue), `${envName(name)}=${JSON.stringify(envValue)}`);
    } else {
      value = defaultOf(def, sources.machine);
    }
    config[name] = value;
  }
  const result = config as Config;
  if (result.heartbeatIntervalMs >= result.leaseTtlMs) {
    throw new ConfigError(
      `heartbeat interval (${result.heartbeatIntervalMs}ms) must be shorter than the lease TTL ` +
        `(${result.leaseTtlMs}ms), or every lease expires between heartbeats; ` +
        "lower --heartbeat-interval or raise --lease-ttl",
    );
  }
  if (result.killGraceMs + result.heartbeatIntervalMs >= result.leaseTtlMs) {
    throw new ConfigError(
      `kill grace (${result.killGraceMs}ms) plus heartbeat interval ` +
        `(${result.heartbeatIntervalMs}ms) must be shorter than the lease TTL ` +
        `(${result.leaseTtlMs}ms): a job's lease guard starts stopping it a kill grace before ` +
        "the lease runs out, so a renewal must come before that; lower --kill-grace or raise --lease-ttl",
    );
  }
  return result;
}

function defaultOf<T>(def: SettingDef<T>, machine: Machine): T {
  const fallback = def.default;
  return typeof fallback === "function" ? (fallback as (m: Machine) => T)(machine) : fallback;
}

function checked(parsed: unknown, source: string): unknown {
  if (typeof parsed === "object" && parsed !== null && "error" in parsed) {
    throw new ConfigError(`${source}: ${(parsed as { error: string }).error}`);
  }
  return parsed;
}

/** The store URL the settings name: --store, or the SQLite file in the data directory. */
export function storeUrl(config: Pick<Config, "store" | "dataDir">): string {
  return config.store ?? `sqlite:${config.dataDir.replace(/\/+$/, "")}/baton.db`;
}
