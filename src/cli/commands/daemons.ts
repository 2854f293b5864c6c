import { join } from "node:path";
import { Command } from "commander";
import { type Config, type SettingName, storeUrl } from "../../core/config.js";
import type { Logger } from "../../logger.js";
import { ApiError } from "../../client/errors.js";
import type { RemoteWorkerStore } from "../../client/remoteWorkerStore.js";
import type { Store, WorkerStore } from "../../store/store.js";
import type { Worker } from "../../worker/worker.js";
import { EXIT, ExitError, UsageError } from "../exit.js";
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
      .description(
        "run jobs: claim what fits, run it, report the outcome; against a store (--store), " +
          "or through a Baton server (--server) with no store credentials",
      )
      .addHelpText(
        "after",
        "\nExamples:\n  baton worker --store sqlite:./.baton/baton.db --concurrency 4 --queues default,builds" +
          '\n  baton worker --server http://baton.internal:7070 --token "$TOKEN" --name build-01',
      ),
    [...COMMON, ...WORKER, "server", "token"],
  ).action(async (_options, command: Command) => {
    const config = configOf(command);
    // Only the flag makes a remote worker: BATON_SERVER is the client commands' setting.
    const flags = command.optsWithGlobals<{ store?: unknown; server?: unknown }>();
    const remote = typeof flags.server === "string";
    if (remote && typeof flags.store === "string") {
      throw new UsageError(
        "--store and --server cannot be used together: a worker talks to a store directly " +
          "(--store) or through a Baton server (--server), not both",
      );
    }
    const { createLogger, openConfiguredStore, createWorker, RemoteWorkerStore } = await runtime();
    const logger = createLogger(config.logLevel, config.logFormat);
    let store: WorkerStore;
    let closeStore: () => Promise<void>;
    if (remote) {
      const remoteStore = new RemoteWorkerStore({
        server: config.server,
        token: config.token,
        logger,
      });
      await checkServer(remoteStore, config.name, config.token !== null);
      logger.info(
        { server: remoteStore.server },
        `working for the Baton server at ${remoteStore.server}`,
      );
      store = remoteStore;
      closeStore = async () => remoteStore.close();
    } else {
      const local = await openConfiguredStore(config, logger);
      store = local;
      closeStore = () => local.close();
    }
    // A remote worker leaves reaping to the server, which has the store.
    const reap = !remote;
    if (config.handlers !== null) {
      await runHandlerWorker(config, config.handlers, { store, close: closeStore, reap }, logger);
      return;
    }
    const worker = createWorker(config, store, logger, reap);
    await worker.start();
    await untilShutdown(
      logger,
      async () => {
        await worker.stop(config.shutdownGraceMs);
        await closeStore();
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
  { store, close, reap }: { store: WorkerStore; close: () => Promise<void>; reap: boolean },
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
    await close();
    throw new UsageError(`--handlers ${module}: ${(error as Error).message}`);
  }
  const worker = new HandlerWorker({
    ...config,
    store,
    runner,
    logger,
    reap,
    batchSize: 100,
  });
  await worker.start();
  await untilShutdown(
    logger,
    async () => {
      await worker.stop(config.shutdownGraceMs);
      await close();
    },
    () => {},
    worker.drained.then(() => logger.info("drained: exiting")),
  );
}

/** Fails the start with a clear message when the server cannot serve this worker. */
async function checkServer(
  store: RemoteWorkerStore,
  name: string,
  hasToken: boolean,
): Promise<void> {
  try {
    await store.heldBy(name);
  } catch (error) {
    if (!(error instanceof ApiError)) throw error; // unreachable: exit 3
    const server = store.server;
    if (error.problem.code === "unauthorized") {
      throw new ExitError(
        EXIT.failed,
        hasToken
          ? `the Baton server at ${server} refused this worker's token (${error.message}); ` +
              "give the server's token with --token or BATON_TOKEN"
          : `the Baton server at ${server} requires a token (${error.message}); ` +
              "give it with --token or BATON_TOKEN",
      );
    }
    if (error.problem.code === "route_not_found") {
      throw new ExitError(
        EXIT.failed,
        `${server} does not serve the worker protocol (${error.message}); ` +
          "is it a Baton server of this version?",
      );
    }
    throw new ExitError(
      EXIT.failed,
      `the Baton server at ${server} refused this worker: ${error.message}`,
    );
  }
}

/** Loaded on demand, so that client commands start without the server's dependencies. */
async function runtime() {
  const [{ createLogger }, { startServer }, { openStore }, { Worker }, { RemoteWorkerStore }] =
    await Promise.all([
      import("../../logger.js"),
      import("../../server/server.js"),
      import("../../store/openStore.js"),
      import("../../worker/worker.js"),
      import("../../client/remoteWorkerStore.js"),
    ]);
  const createWorker = (
    config: Config,
    store: WorkerStore,
    logger: Logger,
    reap: boolean,
  ): Worker =>
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
  return { createLogger, startServer, openConfiguredStore, createWorker, RemoteWorkerStore };
}
