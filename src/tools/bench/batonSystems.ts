/**
 * Baton's own adapters for the queue benchmark: in-process on embedded SQLite, in-process on
 * PostgreSQL, and through a `baton server` process (HTTP for the client and the worker).
 */
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { ChildProcess } from "node:child_process";
import { type Client, createClient, Worker } from "../../sdk/index.js";
import { openStore } from "../../store/openStore.js";
import type { Store } from "../../store/store.js";
import { PG_URL } from "./backends.js";
import { type Figure, format, startProcess, stopProcess } from "./harness.js";
import { best, WORKLOAD } from "./queueBench.js";
import { dropSchema, type Payload, postgresDurability, type QueueSystem } from "./queueSystems.js";

const SQLITE_DURABILITY =
  "SQLite WAL, synchronous=FULL: every commit is fsynced before it is acknowledged";

type Handlers = { noop: (payload: Payload) => null };

interface Where {
  /** The connection a client and a worker use. */
  connection: { store: string; schema?: string } | { server: string };
  /** A store connection to count outstanding jobs with. */
  store: Store;
  close(): Promise<void>;
}

class BatonSystem implements QueueSystem {
  readonly system = "Baton";
  durability: string;
  private where: Where | null = null;
  private client: Client<Handlers> | null = null;
  private worker: Worker<Handlers> | null = null;

  constructor(
    readonly variant: string,
    readonly settings: string,
    private readonly open: () => Promise<Where>,
    durability: string,
    readonly concurrency?: number,
    private readonly batchSize = 100,
  ) {
    this.durability = durability;
  }

  async setup(): Promise<void> {
    this.where = await this.open();
    this.client = await createClient<Handlers>(this.where.connection);
  }

  async enqueueOne(payload: Payload): Promise<void> {
    await this.need(this.client).enqueue("noop", payload);
  }

  async enqueueBatch(payloads: readonly Payload[]): Promise<void> {
    await this.need(this.client).enqueueBatch(
      payloads.map((payload) => ({ handler: "noop" as const, payload })),
    );
  }

  async startWorker(concurrency: number, onJob: (payload: Payload) => void): Promise<void> {
    const where = this.need(this.where);
    this.worker = new Worker<Handlers>({
      ...where.connection,
      handlers: {
        noop: (payload: Payload) => {
          onJob(payload);
          return null;
        },
      },
      concurrency,
      batchSize: Math.min(this.batchSize, concurrency),
      logger: false,
    });
    await this.worker.start();
  }

  async outstanding(): Promise<number> {
    const queues = await this.need(this.where).store.listQueues();
    return queues.reduce((sum, queue) => sum + queue.pending + queue.running, 0);
  }

  async stopWorker(): Promise<void> {
    await this.worker?.stop({ grace: 1_000 });
    this.worker = null;
  }

  async teardown(): Promise<void> {
    await this.stopWorker();
    await this.client?.close();
    this.client = null;
    await this.where?.close();
    this.where = null;
  }

  private need<T>(value: T | null): T {
    if (value === null) throw new Error("setup() first");
    return value;
  }
}

function sqliteWhere(): Promise<Where> {
  return (async () => {
    const dir = mkdtempSync(join(tmpdir(), "baton-bench-"));
    const url = `sqlite:${dir}/baton.db`;
    const store = await openStore(url);
    return {
      connection: { store: url },
      store,
      close: async () => {
        await store.close();
        rmSync(dir, { recursive: true, force: true });
      },
    };
  })();
}

let schemas = 0;
async function postgresWhere(): Promise<Where> {
  const schema = `bench_baton_${process.pid}_${schemas++}`;
  const store = await openStore(PG_URL, { schema });
  return {
    connection: { store: PG_URL, schema },
    store,
    close: async () => {
      await store.close();
      await dropSchema(PG_URL, schema);
    },
  };
}

async function serverWhere(): Promise<Where> {
  const dir = mkdtempSync(join(tmpdir(), "baton-bench-"));
  const url = `sqlite:${dir}/baton.db`;
  const server: { child: ChildProcess; ready: Promise<string> } = startProcess([
    "server",
    "--store",
    url,
    "--port",
    "0",
  ]);
  const address = await server.ready;
  const store = await openStore(url);
  return {
    connection: { server: address },
    store,
    close: async () => {
      await store.close();
      await stopProcess(server.child);
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

/** Baton in its configurations: defaults (concurrency 10) and tuned, per store. */
export async function batonSystems(): Promise<QueueSystem[]> {
  const pgDurability = await postgresDurability(PG_URL);
  return [
    new BatonSystem("SQLite", "", sqliteWhere, SQLITE_DURABILITY),
    new BatonSystem(
      "SQLite, tuned",
      "concurrency 1000, batches of 500",
      sqliteWhere,
      SQLITE_DURABILITY,
      1_000,
      500,
    ),
    new BatonSystem("PostgreSQL", "", postgresWhere, pgDurability),
    new BatonSystem(
      "PostgreSQL, tuned",
      "concurrency 1000, batches of 500",
      postgresWhere,
      pgDurability,
      1_000,
      500,
    ),
    new BatonSystem(
      "HTTP server",
      "baton server on SQLite; client and worker over HTTP",
      serverWhere,
      SQLITE_DURABILITY,
    ),
  ];
}

const FLOOR = "PostgreSQL floor";

/** Issue 7's targets, each judged on figures of this run: a Markdown table. */
export function batonVersusPeers(figures: readonly Figure[]): string {
  const median = (workload: string, systems: readonly string[]) =>
    best(figures, workload, systems)?.median ?? Number.NaN;
  const pgBaton = ["Baton (PostgreSQL)", "Baton (PostgreSQL, tuned)"];
  const sqliteBaton = ["Baton (SQLite)", "Baton (SQLite, tuned)"];
  const rows: Array<[string, string, boolean]> = [];
  const ratio = (a: number, b: number) => `${(a / b).toFixed(2)}×`;
  // The raw-SQL floor of any PostgreSQL queue here, where it ran: what the hardware allows.
  const floor = (workload: string, unit: string) => {
    const value = median(workload, [FLOOR]);
    return Number.isNaN(value) ? "" : `; the PostgreSQL floor: ${format(value)} ${unit}`;
  };

  const pgProcessing = median(WORKLOAD.processing, pgBaton);
  const peerProcessing = median(WORKLOAD.processing, ["Graphile Worker", "BullMQ"]);
  rows.push([
    "processing on PostgreSQL ≥ 2× the best of Graphile Worker and BullMQ",
    `${format(pgProcessing)} vs ${format(peerProcessing)} jobs/s: ` +
      `${ratio(pgProcessing, peerProcessing)}${floor(WORKLOAD.processing, "jobs/s")}`,
    pgProcessing >= 2 * peerProcessing,
  ]);
  const sqliteProcessing = median(WORKLOAD.processing, sqliteBaton);
  rows.push([
    "processing on embedded SQLite ≥ 100,000 jobs/s",
    `${format(sqliteProcessing)} jobs/s`,
    sqliteProcessing >= 100_000,
  ]);
  const graphileBatch = median(WORKLOAD.enqueueBatch, ["Graphile Worker"]);
  for (const [name, systems] of [
    ["PostgreSQL", pgBaton],
    ["SQLite", sqliteBaton],
  ] as const) {
    const batch = median(WORKLOAD.enqueueBatch, systems);
    rows.push([
      `batch enqueue (${name}) ≥ 2× Graphile Worker's addJobs`,
      `${format(batch)} vs ${format(graphileBatch)} jobs/s: ${ratio(batch, graphileBatch)}`,
      batch >= 2 * graphileBatch,
    ]);
  }
  for (const system of ["Baton (SQLite)", "Baton (PostgreSQL)", "Baton (HTTP server)"]) {
    const one = median(WORKLOAD.enqueueOne, [system]);
    const many = median(WORKLOAD.enqueueConcurrent, [system]);
    rows.push([
      `${system}: 32 concurrent callers ≥ 10× one caller (durable)`,
      `${format(many)} vs ${format(one)} jobs/s: ${ratio(many, one)}`,
      many >= 10 * one,
    ]);
  }
  const p50 = median(WORKLOAD.pickupP50, pgBaton);
  const p99 = median(WORKLOAD.pickupP99, pgBaton);
  rows.push([
    "pickup latency on PostgreSQL: p50 ≤ 1 ms",
    `${format(p50)} ms${floor(WORKLOAD.pickupP50, "ms")}`,
    p50 <= 1,
  ]);
  rows.push([
    "pickup latency on PostgreSQL: p99 ≤ 5 ms",
    `${format(p99)} ms${floor(WORKLOAD.pickupP99, "ms")}`,
    p99 <= 5,
  ]);
  return [
    "| target (issue 7) | this run | met |",
    "| --- | --- | --- |",
    ...rows.map(
      ([target, measured, met]) => `| ${target} | ${measured} | ${met ? "yes" : "**no**"} |`,
    ),
  ].join("\n");
}
