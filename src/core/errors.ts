/**
 * The error catalogue: every error Baton reports has a stable code, an HTTP status and
 * whether retrying the same request could succeed. Code matches on `code`, never on messages.
 */
export const ERROR_CATALOGUE = {
  validation_failed: { status: 400, title: "The request is invalid", retryable: false },
  malformed_json: { status: 400, title: "The request body is not valid JSON", retryable: false },
  unauthorized: { status: 401, title: "A valid bearer token is required", retryable: false },
  job_not_found: { status: 404, title: "No such job", retryable: false },
  schedule_not_found: { status: 404, title: "No such schedule", retryable: false },
  route_not_found: { status: 404, title: "No such endpoint", retryable: false },
  worker_not_found: { status: 404, title: "No such worker", retryable: false },
  worker_not_live: {
    status: 409,
    title: "The worker is not running, so it cannot take the change",
    retryable: false,
  },
  not_retryable: {
    status: 409,
    title: "Only a failed or cancelled job can be retried",
    retryable: false,
  },
  method_not_allowed: { status: 405, title: "Method not allowed", retryable: false },
  lease_lost: {
    status: 409,
    title: "The attempt no longer holds the job's lease",
    retryable: false,
  },
  body_too_large: { status: 413, title: "The request body is too large", retryable: false },
  unsupported_media_type: {
    status: 415,
    title: "The request body must be application/json",
    retryable: false,
  },
  store_unavailable: { status: 503, title: "The store is unavailable", retryable: true },
  internal: { status: 500, title: "Internal error", retryable: true },
} as const satisfies Record<string, { status: number; title: string; retryable: boolean }>;

export type ErrorCode = keyof typeof ERROR_CATALOGUE;

/** One offending field of a request, named by its path ("resources.cpus", "command"). */
export interface FieldError {
  field: string;
  message: string;
}

export class BatonError extends Error {
  readonly code: ErrorCode;
  readonly status: number;
  readonly retryable: boolean;
  readonly errors: readonly FieldError[];

  constructor(code: ErrorCode, detail?: string, errors: readonly FieldError[] = []) {
    const entry = ERROR_CATALOGUE[code];
    super(detail ?? entry.title);
    this.name = "BatonError";
    this.code = code;
    this.status = entry.status;
    this.retryable = entry.retryable;
    this.errors = errors;
  }
}

export function invalid(field: string, message: string): BatonError {
  return new BatonError("validation_failed", `${field}: ${message}`, [{ field, message }]);
}
