import type { FastifyError, FastifyReply } from "fastify";
import type { Problem } from "../api/problem.js";
import { BatonError, ERROR_CATALOGUE, type ErrorCode, type FieldError } from "../core/errors.js";
import type { Logger } from "../logger.js";

export const PROBLEM_CONTENT_TYPE = "application/problem+json; charset=utf-8";

export function problemOf(error: BatonError, instance: string): Problem {
  const problem: Problem = {
    type: `urn:baton:problem:${error.code}`,
    title: ERROR_CATALOGUE[error.code].title,
    status: error.status,
    detail: error.message,
    instance,
    code: error.code,
  };
  if (error.errors.length > 0) problem.errors = error.errors;
  return problem;
}

export function sendProblem(
  reply: FastifyReply,
  error: BatonError,
  instance: string,
): FastifyReply {
  return reply.status(error.status).type(PROBLEM_CONTENT_TYPE).send(problemOf(error, instance));
}

/** Fastify's own errors, by code, mapped onto the catalogue. */
const FASTIFY_CODES: Readonly<Record<string, ErrorCode>> = {
  FST_ERR_CTP_BODY_TOO_LARGE: "body_too_large",
  FST_ERR_CTP_INVALID_MEDIA_TYPE: "unsupported_media_type",
  FST_ERR_CTP_INVALID_CONTENT_LENGTH: "validation_failed",
  FST_ERR_CTP_EMPTY_JSON_BODY: "malformed_json",
  FST_ERR_CTP_INVALID_JSON_BODY: "malformed_json",
};

interface AjvIssue {
  instancePath: string;
  keyword: string;
  message?: string;
  params: Record<string, unknown>;
}

/** Turns any error a request raised into a BatonError with the fields it concerns. */
export function toBatonError(error: FastifyError | Error, log: Logger): BatonError {
  if (error instanceof BatonError) return error;
  const fastifyError = error as FastifyError & {
    validation?: AjvIssue[];
    validationContext?: string;
  };
  if (fastifyError.validation) {
    const errors = fastifyError.validation.map((issue) =>
      fieldError(issue, fastifyError.validationContext ?? "body"),
    );
    const detail = errors.map((e) => `${e.field}: ${e.message}`).join("; ");
    return new BatonError("validation_failed", detail, errors);
  }
  const code = fastifyError.code ? FASTIFY_CODES[fastifyError.code] : undefined;
  if (code) return new BatonError(code, error.message);
  if (error instanceof SyntaxError || fastifyError.statusCode === 400) {
    return new BatonError("malformed_json", `the request body is not valid JSON: ${error.message}`);
  }
  log.error({ err: error }, "request failed");
  return new BatonError("internal", "internal error; the server log has the details");
}

function fieldError(issue: AjvIssue, context: string): FieldError {
  let path = issue.instancePath
    .split("/")
    .slice(1)
    .map((part) => part.replace(/~1/g, "/").replace(/~0/g, "~"));
  let message = issue.message ?? issue.keyword;
  if (issue.keyword === "required") {
    path = [...path, String(issue.params.missingProperty)];
    message = "is required";
  } else if (issue.keyword === "additionalProperties") {
    path = [...path, String(issue.params.additionalProperty)];
    message = "is not a known field";
  }
  const field = path
    .map((part, index) => (/^\d+$/.test(part) ? `[${part}]` : index === 0 ? part : `.${part}`))
    .join("");
  const prefix = context === "body" ? "" : context === "querystring" ? "query." : `${context}.`;
  return { field: field === "" ? `(${context})` : `${prefix}${field}`, message };
}
