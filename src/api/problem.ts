import type { ErrorCode, FieldError } from "../core/errors.js";

/** An RFC 9457 problem document, with Baton's stable `code` and the offending fields. */
export interface Problem {
  type: string;
  title: string;
  status: number;
  detail: string;
  instance: string;
  code: ErrorCode;
  errors?: readonly FieldError[];
}
