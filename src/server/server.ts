import type { AddressInfo } from "node:net";
import type { Logger } from "../logger.js";
import type { Store } from "../store/store.js";
import { buildApp } from "./app.js";
import { startMaintenance } from "./maintenance.js";

export interface ServerOptions {
  store: Store;
  logger: Logger;
  host: string;
  port: number;
  maxBodyBytes: number;
  token: string | null;
  reapIntervalMs: number;
  logRetentionMs: number;
  scheduleIntervalMs: number;
}

export interface RunningServer {
  url: string;
  /** Stops accepting, ends live log streams, drains in-flight requests, stops maintenance. */
  close(): Promise<void>;
}

/**
 * `baton server`: the HTTP API plus maintenance (lease reaper, cron schedules, log
 * retention), no leader.
 */
export async function startServer(options: ServerOptions): Promise<RunningServer> {
  const { store, logger } = options;
  const closing = new AbortController();
  const app = buildApp({
    store,
    logger,
    maxBodyBytes: options.maxBodyBytes,
    token: options.token,
    closing: closing.signal,
  });
  await app.listen({ host: options.host, port: options.port });
  const address = app.server.address() as AddressInfo;
  const host = address.family === "IPv6" ? `[${address.address}]` : address.address;
  const url = `http://${host}:${address.port}`;
  const stopMaintenance = startMaintenance(options);
  logger.info({ url }, `Baton server listening on ${url}`);
  return {
    url,
    close: async () => {
      stopMaintenance();
      closing.abort();
      await app.close();
    },
  };
}
