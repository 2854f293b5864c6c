import { resolve } from "node:path";
import { ConfigError } from "../core/config.js";
import type { Logger } from "../logger.js";
import { PostgresStore } from "./postgres/postgresStore.js";
import { SqliteStore } from "./sqlite/sqliteStore.js";
import type { Store } from "./store.js";

export interface OpenStoreOptions {
  pollIntervalMs?: number;
  /** PostgreSQL schema (default "baton"). */
  schema?: string;
  logger?: Logger;
  idempotencyRetentionMs?: number;
}

/**
 * Opens the store a URL names: `sqlite:PATH` (relative paths from the working directory) or
 * `postgres://user@host:port/database` (the schema is created and migrated if needed).
 */
export async function openStore(url: string, options: OpenStoreOptions = {}): Promise<Store> {
  const retention =
    options.idempotencyRetentionMs === undefined
      ? {}
      : { idempotencyRetentionMs: options.idempotencyRetentionMs };
  if (url.startsWith("sqlite:")) {
    const path = url.slice("sqlite:".length).replace(/^\/\/(?=\/)/, "");
    if (path === "") throw new ConfigError(`store URL ${url}: give a file, e.g. sqlite:./baton.db`);
    const file = path === ":memory:" ? path : resolve(path);
    return new SqliteStore({
      path: file,
      ...(options.pollIntervalMs === undefined ? {} : { pollIntervalMs: options.pollIntervalMs }),
      ...retention,
    });
  }
  if (/^postgres(ql)?:\/\//.test(url)) {
    const log = options.logger;
    try {
      return await PostgresStore.open({
        url,
        ...(options.schema === undefined ? {} : { schema: options.schema }),
        ...retention,
        onListenerError: (error, failures) => {
          if (error)
            log?.warn({ err: error }, "lost the PostgreSQL notification connection; reconnecting");
          else log?.info({ failures }, "PostgreSQL notifications restored");
        },
      });
    } catch (error) {
      throw new ConfigError(`cannot open the store at ${redact(url)}: ${(error as Error).message}`);
    }
  }
  throw new ConfigError(
    `store URL ${JSON.stringify(url)}: expected sqlite:PATH or postgres://user@host/database`,
  );
}

/** The URL without its password, for messages. */
function redact(url: string): string {
  return url.replace(/\/\/([^:/@]+):[^@/]*@/, "//$1:***@");
}
