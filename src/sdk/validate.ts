import { FormatRegistry } from "@sinclair/typebox";
import { Value } from "@sinclair/typebox/value";
import { JobInputSchema } from "../api/schemas.js";
import { BatonError } from "../core/errors.js";
import type { JobInput } from "../core/jobInput.js";

if (!FormatRegistry.Has("date-time")) {
  FormatRegistry.Set("date-time", (value) => !Number.isNaN(Date.parse(value)));
}

/**
 * Checks a job input against the HTTP API's own schema, so that a job enqueued straight
 * into a store is held to exactly the rules a server applies; the error names the field.
 */
export function checkJobInput(input: JobInput, at = ""): void {
  const first = Value.Errors(JobInputSchema, input).First();
  if (!first) return;
  const path = first.path.replace(/^\//, "").replace(/\//g, ".");
  const field = `${at}${path === "" ? "job" : path}`;
  throw new BatonError("validation_failed", `${field}: ${first.message}`, [
    { field, message: first.message },
  ]);
}
