/**
 * Baton's TypeScript SDK: enqueue handler jobs from an application, and run them with
 * typed handlers, on embedded SQLite, on PostgreSQL, or through a Baton server.
 *
 *   import { createClient, defineHandlers, Worker } from "baton";
 */
export {
  type BatchEntry,
  type Client,
  type Connection,
  createClient,
  type Enqueued,
  type EnqueuedBatch,
  JobFailedError,
  type ListJobsQuery,
  type PayloadOf,
  type ResultOf,
} from "./client.js";
export type { Duration, EnqueueOptions } from "./options.js";
export { Worker, type WorkerEvents, type WorkerOptions } from "./worker.js";
export {
  defineHandlers,
  type Handler,
  type HandlerContext,
  type HandlerMap,
  JobStopped,
  NonRetryableError,
  type StopCause,
} from "./handlers.js";
export type { JobJson as Job, AttemptJson as Attempt } from "../api/jobJson.js";
export type { Failure, FailureReason, JobState } from "../core/job.js";
export { BatonError } from "../core/errors.js";
export { ApiError, UnreachableError } from "../client/errors.js";
