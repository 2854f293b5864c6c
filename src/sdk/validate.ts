import { FormatRegistry } from "@sinclair/typebox";
import { TypeCompiler } from "@sinclair/typebox/compiler";
import { JobInputSchema } from "../api/schemas.js";
import { BatonError } from "../core/errors.js";
import type { JobInput } from "../core/jobInput.js";

if (!FormatRegistry.Has("date-time")) {
  FormatRegistry.Set("date-time", (value) => !Number.isNaN(Date.parse(value)));
}

// Compiled once: a check then costs about a microsecond, where walking the schema for errors
// costs several; the errors are only looked for when the check fails.
const jobInputCheck = TypeCompiler.Compile(JobInputSchema);

/**
 * Checks a job input against the HTTP API's own schema, so that a job enqueued straight
 * into a store is held to exactly the rules a server applies; the error names the field.
 */
export function checkJobInput(input: JobInput, at = ""): void {
  if (jobInputCheck.Check(input)) return;
  const first = jobInputCheck.Errors(input).First();
  if (!first) return;
  const path = first.path.replace(/^\//, "").replace(/\//g, ".");
  const field = `${at}${path === "" ? "job" : path}`;
  throw new BatonError("validation_failed", `${field}: ${first.message}`, [
    { field, message: first.message },
  ]);
}
