/** Where the example keeps its jobs and its files; shared by the worker and the enqueuer. */
import { join, resolve } from "node:path";
import { fileURLToPath, pathToFileURL } from "node:url";

/** Pictures, thumbnails and the outbox: `examples/thumbnails/out/`, or THUMBNAILS_DIR. */
const root = resolve(
  process.env.THUMBNAILS_DIR ?? fileURLToPath(new URL("../out", import.meta.url)),
);

export const dirs = {
  root,
  images: join(root, "images"),
  thumbnails: join(root, "thumbnails"),
  outbox: join(root, "outbox"),
};

/**
 * The store that holds the jobs: BATON_STORE, `sqlite:PATH` or `postgres://…` (with
 * BATON_SCHEMA naming the PostgreSQL schema, as for `baton up`). By default a SQLite file
 * beside the pictures.
 */
export const connection: { store: string; schema?: string } = {
  store: process.env.BATON_STORE ?? `sqlite:${join(root, "baton.db")}`,
  ...(process.env.BATON_SCHEMA ? { schema: process.env.BATON_SCHEMA } : {}),
};

/** Whether the module at `url` is the one `node` was asked to run (not imported). */
export function isMain(url: string): boolean {
  return process.argv[1] !== undefined && url === pathToFileURL(resolve(process.argv[1])).href;
}
