import { readFileSync } from "node:fs";
import { type Command, InvalidArgumentError } from "commander";
import { parseDuration } from "../core/duration.js";
import type { JobInput } from "../core/jobInput.js";
import { UsageError } from "./exit.js";

function intIn(min: number, max: number) {
  return (value: string): number => {
    if (!/^\d+$/.test(value)) throw new InvalidArgumentError(`expected an integer ${min}..${max}`);
    const n = Number(value);
    if (n < min || n > max) throw new InvalidArgumentError(`expected an integer ${min}..${max}`);
    return n;
  };
}

function positive(value: string): number {
  const n = Number(value);
  if (value.trim() === "" || !Number.isFinite(n) || n <= 0) {
    throw new InvalidArgumentError("expected a number > 0");
  }
  return n;
}

function duration(value: string): number {
  const ms = parseDuration(value);
  if (ms === null || ms < 0)
    throw new InvalidArgumentError("expected a duration such as 30s, 5m, 1h");
  return ms;
}

function isoTime(value: string): string {
  if (Number.isNaN(Date.parse(value))) {
    throw new InvalidArgumentError("expected an ISO 8601 time such as 2026-12-01T09:00:00Z");
  }
  return new Date(value).toISOString();
}

/** Collects repeated K=V flags; `--env NAME` alone takes NAME's value from this shell. */
function pairs(fromEnv: boolean) {
  return (value: string, previous: Record<string, string> = {}): Record<string, string> => {
    const eq = value.indexOf("=");
    if (eq === -1) {
      const inherited = fromEnv ? process.env[value] : undefined;
      if (inherited === undefined)
        throw new InvalidArgumentError(`expected KEY=VALUE, got "${value}"`);
      return { ...previous, [value]: inherited };
    }
    if (eq === 0) throw new InvalidArgumentError(`expected KEY=VALUE, got "${value}"`);
    return { ...previous, [value.slice(0, eq)]: value.slice(eq + 1) };
  };
}

/** The options of `submit` and `run`, the same for both. */
export function withJobOptions(command: Command): Command {
  return (
    command
      // Options after the program name belong to the program: `baton run ls -la`.
      .passThroughOptions()
      .argument("[command...]", "program and arguments to run (after --)")
      .option("--script <file>", "run a script file with /bin/sh (- reads stdin)")
      .option("--handler <name>", "run a TypeScript handler (see baton worker --handlers)")
      .option("--payload <json>", "the handler's payload, as JSON (default null)", json)
      .option("-q, --queue <name>", "queue to submit to", undefined)
      .option("-p, --priority <1-10>", "1 is the most urgent (default 5)", intIn(1, 10))
      .option("--cpus <n>", "CPUs the job needs (default 1)", positive)
      .option("--memory <mb>", "memory the job needs, in MiB", intIn(1, Number.MAX_SAFE_INTEGER))
      .option("-t, --timeout <duration>", "stop the job after this long (e.g. 30s, 10m)", duration)
      .option(
        "--max-attempts <n>",
        "attempts before the job fails for good (default 1; handler jobs 3)",
        intIn(1, 1000),
      )
      .option(
        "--max-log-bytes <n>",
        "store at most this many bytes of output; count the rest (default 64 MiB)",
        intIn(0, 2 ** 40),
      )
      .option("--backoff <duration>", "delay before the first retry, doubled each time", duration)
      .option("--backoff-max <duration>", "longest delay between retries (default 5m)", duration)
      .option("--delay <duration>", "start no sooner than this from now", duration)
      .option("--at <time>", "start no sooner than this ISO 8601 time", isoTime)
      .option("--idempotency-key <key>", "submitting the same key again returns the first job")
      .option(
        "--concurrency-key <key>",
        "jobs sharing this key run at most --concurrency-limit at a time, across all workers",
      )
      .option("--concurrency-limit <n>", "for --concurrency-key (default 1)", intIn(1, 1000))
      .option("-e, --env <KEY=VALUE>", "environment variable for the job (repeatable)", pairs(true))
      .option("-l, --label <KEY=VALUE>", "label to attach (repeatable)", pairs(false))
      .option("--cwd <dir>", "absolute working directory (default: a fresh directory per attempt)")
  );
}

export interface JobFlags {
  script?: string;
  handler?: string;
  payload?: unknown;
  queue?: string;
  priority?: number;
  cpus?: number;
  memory?: number;
  timeout?: number;
  maxAttempts?: number;
  maxLogBytes?: number;
  backoff?: number;
  backoffMax?: number;
  delay?: number;
  at?: string;
  idempotencyKey?: string;
  concurrencyKey?: string;
  concurrencyLimit?: number;
  env?: Record<string, string>;
  label?: Record<string, string>;
  cwd?: string;
}

export function jobInputFrom(args: readonly string[], flags: JobFlags): JobInput {
  const given = [args.length > 0, flags.script !== undefined, flags.handler !== undefined];
  if (given.filter(Boolean).length > 1) {
    throw new UsageError("give one of a command, --script or --handler");
  }
  if (!given.includes(true)) {
    throw new UsageError(
      "nothing to run: give a command after --, --script FILE or --handler NAME",
    );
  }
  if (flags.payload !== undefined && flags.handler === undefined) {
    throw new UsageError("--payload goes with --handler");
  }
  if (flags.delay !== undefined && flags.at !== undefined) {
    throw new UsageError("give --delay or --at, not both");
  }
  const input: JobInput = {};
  if (flags.script !== undefined) input.script = readScript(flags.script);
  else if (flags.handler !== undefined) {
    input.handler = flags.handler;
    if (flags.payload !== undefined) input.payload = flags.payload;
  } else input.command = [...args];
  if (flags.queue !== undefined) input.queue = flags.queue;
  if (flags.priority !== undefined) input.priority = flags.priority;
  if (flags.cpus !== undefined || flags.memory !== undefined) {
    input.resources = {};
    if (flags.cpus !== undefined) input.resources.cpus = flags.cpus;
    if (flags.memory !== undefined) input.resources.memoryMb = flags.memory;
  }
  if (flags.timeout !== undefined) input.timeoutMs = flags.timeout;
  if (flags.maxAttempts !== undefined) input.maxAttempts = flags.maxAttempts;
  if (flags.maxLogBytes !== undefined) input.maxLogBytes = flags.maxLogBytes;
  if (flags.backoff !== undefined || flags.backoffMax !== undefined) {
    input.backoff = {};
    if (flags.backoff !== undefined) input.backoff.baseMs = flags.backoff;
    if (flags.backoffMax !== undefined) input.backoff.maxMs = flags.backoffMax;
  }
  if (flags.delay !== undefined) input.delayMs = flags.delay;
  if (flags.at !== undefined) input.runAt = flags.at;
  if (flags.idempotencyKey !== undefined) input.idempotencyKey = flags.idempotencyKey;
  if (flags.concurrencyKey !== undefined) input.concurrencyKey = flags.concurrencyKey;
  if (flags.concurrencyLimit !== undefined) input.concurrencyLimit = flags.concurrencyLimit;
  if (flags.env !== undefined) input.env = flags.env;
  if (flags.label !== undefined) input.labels = flags.label;
  if (flags.cwd !== undefined) input.cwd = flags.cwd;
  return input;
}

function json(raw: string): unknown {
  try {
    return JSON.parse(raw) as unknown;
  } catch (error) {
    throw new InvalidArgumentError(`not JSON: ${(error as Error).message}`);
  }
}

function readScript(file: string): string {
  try {
    return readFileSync(file === "-" ? 0 : file, "utf8");
  } catch (error) {
    throw new UsageError(`cannot read script ${file}: ${(error as Error).message}`);
  }
}
