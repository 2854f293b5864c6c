import type { FastifyInstance } from "fastify";
import { jobToJson } from "../../api/jobJson.js";
import {
  DlqQuery,
  DlqReplaySchema,
  JobBatchSchema,
  JobIdParams,
  JobInputSchema,
  ListJobsQuery,
} from "../../api/schemas.js";
import { BatonError } from "../../core/errors.js";
import { explainWait } from "../../core/explain.js";
import type { JobState } from "../../core/job.js";
import { type JobInput, normalizeJobInput } from "../../core/jobInput.js";
import type { Store } from "../../store/store.js";

const DEFAULT_LIST_LIMIT = 50;

interface ListParams {
  queue?: string;
  limit?: string;
  cursor?: string;
}
const MAX_LIST_LIMIT = 1_000;

export function notFound(id: string): BatonError {
  return new BatonError("job_not_found", `there is no job ${JSON.stringify(id)}`);
}

/** The same error, its fields named within entry `index` of a batch. */
function atIndex(error: BatonError, index: number): BatonError {
  const errors = error.errors.map((e) => ({ ...e, field: `jobs[${index}].${e.field}` }));
  const detail = errors.map((e) => `${e.field}: ${e.message}`).join("; ");
  return new BatonError(error.code, detail || `jobs[${index}]: ${error.message}`, errors);
}

export function registerJobRoutes(app: FastifyInstance, store: Store): void {
  app.post<{ Body: JobInput }>(
    "/v1/jobs",
    { schema: { body: JobInputSchema } },
    async (request, reply) => {
      const spec = normalizeJobInput(request.body, Date.now());
      const { job, created } = await store.submit(spec);
      reply.header("location", `/v1/jobs/${job.id}`);
      return reply.status(created ? 201 : 200).send(jobToJson(job));
    },
  );

  // All or nothing: every entry is checked before any is stored, in one transaction.
  app.post<{ Body: { jobs: JobInput[] } }>(
    "/v1/jobs/batch",
    { schema: { body: JobBatchSchema } },
    async (request, reply) => {
      const now = Date.now();
      const specs = request.body.jobs.map((input, index) => {
        try {
          return normalizeJobInput(input, now);
        } catch (error) {
          throw error instanceof BatonError ? atIndex(error, index) : error;
        }
      });
      const answers = await store.submitBatch(specs);
      const created = answers.some((answer) => answer.created);
      return reply.status(created ? 201 : 200).send({
        jobs: answers.map((answer) => jobToJson(answer.job)),
        created: answers.map((answer) => answer.created),
      });
    },
  );

  const listPage = async (query: ListParams, state: JobState | undefined) => {
    const limit = Number(query.limit ?? DEFAULT_LIST_LIMIT);
    if (limit < 1 || limit > MAX_LIST_LIMIT) {
      throw new BatonError("validation_failed", `query.limit: must be 1..${MAX_LIST_LIMIT}`, [
        { field: "query.limit", message: `must be 1..${MAX_LIST_LIMIT}` },
      ]);
    }
    const page = await store.list({ state, queue: query.queue, cursor: query.cursor, limit });
    return { jobs: page.jobs.map(jobToJson), nextCursor: page.nextCursor };
  };

  app.get<{ Querystring: ListParams & { state?: string } }>(
    "/v1/jobs",
    { schema: { querystring: ListJobsQuery } },
    async (request) => listPage(request.query, request.query.state as JobState | undefined),
  );

  // The dead letters: failed jobs with no attempts left.
  app.get<{ Querystring: ListParams }>(
    "/v1/dlq",
    { schema: { querystring: DlqQuery } },
    async (request) => listPage(request.query, "failed"),
  );

  app.post<{ Body: { ids: string[] } | { all: true; queue?: string } }>(
    "/v1/dlq/replay",
    { schema: { body: DlqReplaySchema } },
    async (request) => {
      const { body } = request;
      const jobs = await store.retry(
        "ids" in body
          ? { ids: body.ids, states: ["failed"] }
          : { queue: body.queue ?? null, states: ["failed"] },
      );
      const replayed = new Set(jobs.map((job) => job.id));
      return {
        jobs: jobs.map(jobToJson),
        // Named jobs that were not dead letters (unknown, or not failed): left unchanged.
        skipped: "ids" in body ? body.ids.filter((id) => !replayed.has(id)) : [],
      };
    },
  );

  app.post<{ Params: { id: string } }>(
    "/v1/jobs/:id/retry",
    { schema: { params: JobIdParams } },
    async (request) => {
      const { id } = request.params;
      const [job] = await store.retry({ ids: [id], states: ["failed", "cancelled"] });
      if (job) return jobToJson(job);
      const current = await store.get(id);
      if (!current) throw notFound(id);
      throw new BatonError(
        "not_retryable",
        `job ${id} is ${current.state}, not failed or cancelled`,
      );
    },
  );

  app.get<{ Params: { id: string } }>(
    "/v1/jobs/:id/explain",
    { schema: { params: JobIdParams } },
    async (request) => {
      const facts = await store.waitFacts(request.params.id);
      if (!facts) throw notFound(request.params.id);
      return explainWait(facts);
    },
  );

  app.get<{ Params: { id: string } }>(
    "/v1/jobs/:id",
    { schema: { params: JobIdParams } },
    async (request) => {
      const job = await store.get(request.params.id);
      if (!job) throw notFound(request.params.id);
      return jobToJson(job);
    },
  );

  // Idempotent: cancelling a cancelled or finished job answers 200 with the job unchanged.
  app.post<{ Params: { id: string } }>(
    "/v1/jobs/:id/cancel",
    { schema: { params: JobIdParams } },
    async (request) => {
      const job = await store.cancel(request.params.id);
      if (!job) throw notFound(request.params.id);
      return jobToJson(job);
    },
  );
}
