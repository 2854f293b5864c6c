import { pathToFileURL } from "node:url";
import { resolve } from "node:path";
import type { HandlerMap } from "./handlerTypes.js";

/** A module path (relative to the working directory) or URL, as a URL import() takes. */
export function moduleUrl(specifier: string | URL): string {
  if (specifier instanceof URL) return specifier.href;
  return /^[a-z][a-z0-9+.-]*:/i.test(specifier) && !/^[a-z]:\\/i.test(specifier)
    ? specifier
    : pathToFileURL(resolve(specifier)).href;
}

/**
 * Loads the handlers a module exports: `export const handlers = defineHandlers({…})`, or a
 * default export of that object.
 */
export async function loadHandlers(specifier: string | URL): Promise<HandlerMap> {
  const url = moduleUrl(specifier);
  let loaded: Record<string, unknown>;
  try {
    loaded = (await import(url)) as Record<string, unknown>;
  } catch (error) {
    throw new Error(`cannot load handlers from ${url}: ${(error as Error).message}`);
  }
  const handlers = loaded.handlers ?? loaded.default;
  if (typeof handlers !== "object" || handlers === null) {
    throw new Error(
      `${url} exports no handlers: export them as \`export const handlers = defineHandlers({…})\` ` +
        "or as the default export",
    );
  }
  const notFunctions = Object.entries(handlers).filter(([, value]) => typeof value !== "function");
  if (notFunctions.length > 0 || Object.keys(handlers).length === 0) {
    throw new Error(
      Object.keys(handlers).length === 0
        ? `${url}: the handlers object is empty`
        : `${url}: handler ${notFunctions.map(([name]) => `"${name}"`).join(", ")} is not a function`,
    );
  }
  return handlers as HandlerMap;
}
