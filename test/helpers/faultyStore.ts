import type { Store } from "../../src/store/store.js";

export interface Fault {
  /** Reject every call, as an unreachable store would. */
  fail?: boolean;
  /** Answer only after this long, as a slow store would. */
  delayMs?: number;
}

type AsyncMethod = {
  [K in keyof Store]: Store[K] extends (...args: never[]) => Promise<unknown> ? K : never;
}[keyof Store];

/**
 * Wraps a real store and injects failures into chosen methods, so that the worker's
 * heartbeat-failure, slow-store and fencing paths can be driven deterministically.
 */
export function faultyStore(store: Store): {
  store: Store;
  faults: Map<AsyncMethod, Fault>;
  calls: Map<string, number>;
} {
  const faults = new Map<AsyncMethod, Fault>();
  const calls = new Map<string, number>();
  const wrapped = new Proxy(store, {
    get(target, property, receiver) {
      const value: unknown = Reflect.get(target, property, receiver);
      if (typeof value !== "function") return value;
      const method = value as (...args: unknown[]) => unknown;
      return (...args: unknown[]) => {
        calls.set(String(property), (calls.get(String(property)) ?? 0) + 1);
        const fault = faults.get(property as AsyncMethod);
        if (!fault) return method.apply(target, args);
        return (async () => {
          if (fault.delayMs) await new Promise((resolve) => setTimeout(resolve, fault.delayMs));
          if (fault.fail) throw new Error(`injected fault: ${String(property)} is unreachable`);
          return method.apply(target, args);
        })();
      };
    },
  });
  return { store: wrapped, faults, calls };
}
