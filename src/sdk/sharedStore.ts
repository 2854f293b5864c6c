import { openStore } from "../store/openStore.js";
import type { Store } from "../store/store.js";

interface Shared {
  store: Promise<Store>;
  users: number;
}

const shared = new Map<string, Shared>();

/**
 * One store per URL and schema in a process, shared by its clients and workers: a job an
 * in-process client enqueues wakes an in-process worker at once, without a round trip
 * through the database's own notifications. Closed when its last user lets go.
 */
export async function acquireStore(
  url: string,
  schema: string | undefined,
): Promise<{ store: Store; release: () => Promise<void> }> {
  const key = `${url}\u0000${schema ?? ""}`;
  let entry = shared.get(key);
  if (!entry) {
    const store = openStore(url, schema === undefined ? {} : { schema });
    entry = { store, users: 0 };
    shared.set(key, entry);
    store.catch(() => shared.delete(key));
  }
  entry.users++;
  const current = entry;
  let store: Store;
  try {
    store = await current.store;
  } catch (error) {
    current.users--;
    throw error;
  }
  let released = false;
  return {
    store,
    release: async () => {
      if (released) return;
      released = true;
      current.users--;
      if (current.users === 0 && shared.get(key) === current) {
        shared.delete(key);
        await store.close();
      }
    },
  };
}
