import { join } from "node:path";
import { Command } from "commander";
import { type Config, type SettingName, storeUrl } from "../../core/config.js";
import type { Logger } from "../../logger.js";
import type { Store } from "../../store/store.js";
import type { Worker } from "../../worker/worker.js";
import { UsageError } from "../exit.js";
import { untilShutdown } from "../lifecycle.js";
import { configOf, withSettings } from "../settings.js";

const COMMON: readonly SettingName[] = [
  "store",
  "schema",
  "dataDir",
  "pollIntervalMs",
  "reapIntervalMs",
  "logLevel",
  "logFormat",
];
const SERVER: readonly SettingName[] = [
  "host",
  "port",
  "maxBodyBytes",
  "token",
  "logRetentionMs",
  "idempotencyRetentionMs",
  "scheduleIntervalMs",
];
const WORKER: readonly SettingName[] = [
  "name",
  "handlers",
  "isolation",
  "stateDir",
  "concurrency",
  "cpus",
  "memoryMb",
  "queues",
  "leaseTtlMs",
  "heartbeatIntervalMs",
  "maxHeartbeatFailures",
  "shutdownGraceMs",
  "killGraceMs",
  "flushIntervalMs",
  "flushMaxEvents",
  "maxBufferedEvents",
];

export function upCommand(): Command {
  return withSettings(
    new Command("up")
      .description("run a server and a worker in one process, on embedded SQLite (no setup)")
      .addHelpText(
        "after",
        "\nExample:\n  baton up                      # http://127.0.0.1:7070, data in ./.baton\n  baton up --port 8080 --data-dir /var/lib/baton",
      ),
    [...COMMON, ...SERVER, ...WORKER],
  ).action(async (_options, command: Command) => {
    const config = configOf(command);
    const { createLogger, startServer, openConfiguredStore, createWorker } = await runtime();
    const logger = createLogger(config.logLevel, config.logFormat);
    const store = await openConfiguredStore(config, logger);
    const server = await startServer({ ...config, store, logger });
    const worker = createWorker(config, store, logger, false);
    await worker.start();
    logger.info(
      { url: server.url, store: storeUrl(config) },
      `Baton is up at ${server.url}; try: npx baton run -- echo hello`,
    );
    await untilShutdown(
      logger,
      async () => {
        await worker.stop(config.shutdownGraceMs);
        await server.close();
        await store.close();
      },
      () => worker.stopAllRuns(),
    );
    logger.info("Baton stopped");
  });
}

export function serverCommand(): Command {
  return withSettings(
    new Command("server")
      .description("run the control plane: HTTP API and maintenance (lease reaper)")
      .addHelpText(
        "after",
        "\nExample:\n  baton server --store sqlite:/var/lib/baton/baton.db --port 7070",
      ),
    [...COMMON, ...SERVER],
  ).action(async (_options, command: Command) => {
    const config = configOf(command);
    const { createLogger, startServer, openConfiguredStore } = await runtime();
    const logger = createLogger(config.logLevel, config.logFormat);
    const store = await openConfiguredStore(config, logger);
    const server = await startServer({ ...config, store, logger });
    await untilShutdown(
      logger,
      async () => {
        await server.close();
        await store.close();
      },
      () => {},
    );
    logger.info("server stopped");
  });
}

export function workerCommand(): Command {
  return withSettings(
    new Command("worker")
      .description("run jobs: claim what fits, run it, report the outcome")
      .addHelpText(
        "after",
        "\nExample:\n  baton worker --store sqlite:./.baton/baton.db --concurrency 4 --queues default,builds",
      ),
    [...COMMON, ...WORKER],
  ).action(async (_options, command: Command) => {
    const config = configOf(command);
    const { createLogger, openConfiguredStore, createWorker } = await runtime();
    const logger = createLogger(config.logLevel, config.logFormat);
    const store = await openConfiguredStore(config, logger);
    if (config.handlers !== null) {
      await runHandlerWorker(config, config.handlers, store, logger);
      return;
    }
    const worker = createWorker(config, store, logger, true);
    await worker.start();
    await untilShutdown(
      logger,
      async () => {
        await worker.stop(config.shutdownGraceMs);
        await store.close();
      },
      () => worker.stopAllRuns(),
      // Drained by an operator: every job has finished, so the worker exits.
      worker.drained.then(() => logger.info("drained: exiting")),
    );
  });
}

/** `baton worker --handlers MODULE`: runs that module's handler jobs until a signal. */
async function runHandlerWorker(
  config: Config,
  module: string,
  store: Store,
  logger: Logger,
): Promise<void> {
  const [{ HandlerWorker }, { InlineRunner }, { ThreadRunner }, { loadHandlers }] =
    await Promise.all([
      import("../../worker/handlerWorker.js"),
      import("../../worker/handlerRunner.js"),
      import("../../worker/threadRunner.js"),
      import("../../worker/handlerModule.js"),
    ]);
  let runner;
  try {
    runner =
      config.isolation === "thread"
        ? await ThreadRunner.start(module, config.killGraceMs)
        : new InlineRunner(await loadHandlers(module));
  } catch (error) {
    await store.close();
    throw new UsageError(`--handlers ${module}: ${(error as Error).message}`);
  }
  const worker = new HandlerWorker({
    ...config,
    store,
    runner,
    logger,
    reap: true,
    batchSize: 100,
  });
  await worker.start();
  await untilShutdown(
    logger,
    async () => {
      await worker.stop(config.shutdownGraceMs);
      await store.close();
    },
    () => {},
    worker.drained.then(() => logger.info("drained: exiting")),
  );
}

/** Loaded on demand, so that client commands start without the server's dependencies. */
async function runtime() {
  const [{ createLogger }, { startServer }, { openStore }, { Worker }] = await Promise.all([
    import("../../logger.js"),
    import("../../server/server.js"),
    import("../../store/openStore.js"),
    import("../../worker/worker.js"),
  ]);
  const createWorker = (config: Config, store: Store, logger: Logger, reap: boolean): Worker =>
    new Worker({
      ...config,
      store,
      logger,
      stateDir: config.stateDir ?? join(config.dataDir, "workers", config.name),
      reap,
      supervise: true,
    });
  /** The store the settings name (URL, schema), reporting to `logger`. */
  const openConfiguredStore = (config: Config, logger: Logger): Promise<Store> =>
    openStore(storeUrl(config), {
      pollIntervalMs: config.pollIntervalMs,
      schema: config.schema,
      idempotencyRetentionMs: config.idempotencyRetentionMs,
      logger,
    });
  return { createLogger, startServer, openConfiguredStore, createWorker };
}
