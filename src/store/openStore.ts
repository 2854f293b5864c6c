import { resolve } from "node:path";
import { ConfigError } from "../core/config.js";
import { SqliteStore } from "./sqlite/sqliteStore.js";
import type { Store } from "./store.js";

export interface OpenStoreOptions {
  pollIntervalMs?: number;
}

/** Opens the store a URL names: `sqlite:PATH` (relative paths from the working directory). */
export function openStore(url: string, options: OpenStoreOptions = {}): Store {
  if (url.startsWith("sqlite:")) {
    const path = url.slice("sqlite:".length).replace(/^\/\/(?=\/)/, "");
    if (path === "") throw new ConfigError(`store URL ${url}: give a file, e.g. sqlite:./baton.db`);
    const file = path === ":memory:" ? path : resolve(path);
    return new SqliteStore({ path: file, ...options });
  }
  if (/^postgres(ql)?:\/\//.test(url)) {
    throw new ConfigError(
      `store URL ${url}: this version of Baton has only the SQLite store (sqlite:PATH)`,
    );
  }
  throw new ConfigError(`store URL ${JSON.stringify(url)}: expected sqlite:PATH`);
}
