import { type JobJson, jobToJson } from "../api/jobJson.js";
import { ApiError } from "../client/errors.js";
import { GroupCommit } from "../groupCommit.js";
import { BatonClient } from "../client/httpClient.js";
import type { Job, JobState } from "../core/job.js";
import { type JobInput, normalizeJobInput } from "../core/jobInput.js";
import type { Store } from "../store/store.js";
import type { Handler, HandlerMap } from "../worker/handlerTypes.js";
import { type Duration, type EnqueueOptions, handlerJobInput, ms } from "./options.js";
import { acquireStore } from "./sharedStore.js";
import { checkJobInput } from "./validate.js";

/** Where a client (or worker) finds Baton: a store URL, or a Baton server. */
export type Connection =
  | {
      /** `sqlite:PATH` (embedded, no server) or `postgres://…`. */
      store: string;
      /** PostgreSQL schema (default "baton"). */
      schema?: string;
    }
  | {
      /** A Baton server's URL, e.g. http://127.0.0.1:7070. */
      server: string;
      token?: string;
    };

/** Handlers of unknown types: what an untyped client enqueues. */
export type AnyHandlers = Record<string, Handler<unknown, unknown>>;

export type PayloadOf<H> = H extends Handler<infer P, unknown> ? P : never;
export type ResultOf<H> = H extends Handler<never, infer R> ? Awaited<R> : never;

/** A job just enqueued. `Result` types what `waitFor` resolves with. */
export interface Enqueued<Result = unknown> {
  readonly id: string;
  /** False when an idempotency key matched an existing job, which is returned instead. */
  readonly created: boolean;
  readonly job: JobJson;
  /** Never set: carries the handler's result type to `waitFor`. */
  readonly __result?: Result;
}

/** One entry of `enqueueBatch`. */
export type BatchEntry<H extends HandlerMap> = {
  [K in keyof H & string]: { handler: K; payload: PayloadOf<H[K]>; options?: EnqueueOptions };
}[keyof H & string];

/** What `waitFor` gives for a batch entry: its own handler's result. */
export type EntryResult<H extends HandlerMap, E> = E extends { handler: infer K extends keyof H }
  ? ResultOf<H[K]>
  : never;

/** `enqueueBatch`'s answer, entry for entry (a tuple stays a tuple). */
export type EnqueuedBatch<H extends HandlerMap, E extends ReadonlyArray<BatchEntry<H>>> = {
  -readonly [I in keyof E]: Enqueued<EntryResult<H, E[I]>>;
};

export interface ListJobsQuery {
  state?: JobState;
  queue?: string;
  limit?: number;
  /** `nextCursor` of the previous page. */
  cursor?: string;
}

/** `waitFor`'s job ended without succeeding (failed, cancelled or skipped). */
export class JobFailedError extends Error {
  override readonly name = "JobFailedError";
  constructor(readonly job: JobJson) {
    super(
      `job ${job.id} ${job.state}` +
        (job.failure ? `: ${job.failure.reason}: ${job.failure.message}` : ""),
    );
  }

  get state(): JobState {
    return this.job.state;
  }
}

const ENDED: ReadonlySet<JobState> = new Set(["succeeded", "failed", "cancelled", "skipped"]);

/** Enqueues handler jobs and follows them; typed by the handlers (`createClient<typeof h>`). */
export interface Client<H extends HandlerMap = AnyHandlers> {
  enqueue<K extends keyof H & string>(
    handler: K,
    payload: PayloadOf<H[K]>,
    options?: EnqueueOptions,
  ): Promise<Enqueued<ResultOf<H[K]>>>;
  /** Enqueues all in one transaction: all are stored, or none. */
  enqueueBatch<const E extends ReadonlyArray<BatchEntry<H>>>(
    entries: E,
  ): Promise<EnqueuedBatch<H, E>>;
  /** The job with its attempts, or null when there is none. */
  getJob(id: string): Promise<JobJson | null>;
  /** Cancels the job (idempotent); null when there is none. */
  cancel(id: string): Promise<JobJson | null>;
  /**
   * Resolves with the job's result once it succeeded; rejects with `JobFailedError` when it
   * failed, was cancelled or skipped, and with an error after `timeout` if given.
   */
  waitFor<R>(job: Enqueued<R>, options?: { timeout?: Duration }): Promise<R>;
  waitFor(job: string, options?: { timeout?: Duration }): Promise<unknown>;
  listJobs(query?: ListJobsQuery): Promise<{ jobs: JobJson[]; nextCursor: string | null }>;
  close(): Promise<void>;
}

/** What the client needs of where the jobs live: a store in-process, or a server. */
interface Backend {
  submit(input: JobInput): Promise<Enqueued>;
  submitBatch(inputs: JobInput[]): Promise<Enqueued[]>;
  get(id: string): Promise<JobJson | null>;
  cancel(id: string): Promise<JobJson | null>;
  list(query: ListJobsQuery): Promise<{ jobs: JobJson[]; nextCursor: string | null }>;
  /** Calls back when the job may have ended; returns the function that stops it. */
  onChange(id: string, listener: () => void): () => void;
  close(): Promise<void>;
}

/**
 * A client of Baton: `createClient({ store: "sqlite:./app.db" })` works in-process on an
 * embedded or PostgreSQL store, `createClient({ server, token })` through a Baton server.
 * Give it your handlers' type to type `enqueue`: `createClient<typeof handlers>(…)`.
 */
export async function createClient<H extends HandlerMap = AnyHandlers>(
  connection: Connection,
): Promise<Client<H>> {
  const backend = "store" in connection ? await storeBackend(connection) : httpBackend(connection);
  return new BatonSdkClient<H>(backend);
}

class BatonSdkClient<H extends HandlerMap> implements Client<H> {
  constructor(private readonly backend: Backend) {}

  async enqueue<K extends keyof H & string>(
    handler: K,
    payload: PayloadOf<H[K]>,
    options?: EnqueueOptions,
  ): Promise<Enqueued<ResultOf<H[K]>>> {
    // The result type is carried by the type alone (`__result` is never set).
    return this.backend.submit(handlerJobInput(handler, payload, options)) as Promise<
      Enqueued<ResultOf<H[K]>>
    >;
  }

  async enqueueBatch<const E extends ReadonlyArray<BatchEntry<H>>>(
    entries: E,
  ): Promise<EnqueuedBatch<H, E>> {
    const inputs = entries.map((entry) =>
      handlerJobInput(entry.handler, entry.payload, entry.options),
    );
    // One answer per entry, in order; the result types are carried by the type alone.
    const answers = inputs.length === 0 ? [] : await this.backend.submitBatch(inputs);
    return answers as EnqueuedBatch<H, E>;
  }

  getJob(id: string): Promise<JobJson | null> {
    return this.backend.get(id);
  }

  cancel(id: string): Promise<JobJson | null> {
    return this.backend.cancel(id);
  }

  listJobs(query: ListJobsQuery = {}): Promise<{ jobs: JobJson[]; nextCursor: string | null }> {
    return this.backend.list(query);
  }

  waitFor<R>(job: Enqueued<R> | string, options: { timeout?: Duration } = {}): Promise<R> {
    const id = typeof job === "string" ? job : job.id;
    const timeoutMs = options.timeout === undefined ? null : ms("timeout", options.timeout);
    return new Promise<R>((resolve, reject) => {
      let done = false;
      let checking = false;
      let again = false;
      const finish = (settle: () => void) => {
        if (done) return;
        done = true;
        stop();
        clearInterval(poll);
        clearTimeout(timer);
        settle();
      };
      const check = async () => {
        if (checking) {
          again = true;
          return;
        }
        checking = true;
        try {
          do {
            again = false;
            const current = await this.backend.get(id);
            if (!current) return finish(() => reject(new Error(`there is no job ${id}`)));
            if (current.state === "succeeded") return finish(() => resolve(current.result as R));
            if (ENDED.has(current.state)) {
              return finish(() => reject(new JobFailedError(current)));
            }
          } while (again && !done);
        } catch (error) {
          finish(() => reject(error instanceof Error ? error : new Error(String(error))));
        } finally {
          checking = false;
        }
      };
      const stop = this.backend.onChange(id, () => void check());
      // A safety net under the change notifications, as the workers have.
      const poll = setInterval(() => void check(), 1_000);
      const timer =
        timeoutMs === null
          ? undefined
          : setTimeout(
              () =>
                finish(() =>
                  reject(new Error(`job ${id} did not end within ${options.timeout} (waitFor)`)),
                ),
              timeoutMs,
            );
      void check();
    });
  }

  close(): Promise<void> {
    return this.backend.close();
  }
}

async function storeBackend(connection: { store: string; schema?: string }): Promise<Backend> {
  const { store, release } = await acquireStore(connection.store, connection.schema);
  const spec = (input: JobInput, at = "") => {
    checkJobInput(input, at);
    return normalizeJobInput(input, Date.now());
  };
  return {
    async submit(input) {
      const { job, created } = await store.submit(spec(input));
      return enqueued(job, created);
    },
    async submitBatch(inputs) {
      const specs = inputs.map((input, i) => spec(input, `jobs[${i}].`));
      const answers = await store.submitBatch(specs);
      return answers.map(({ job, created }) => enqueued(job, created));
    },
    async get(id) {
      const job = await store.get(id);
      return job ? jobToJson(job) : null;
    },
    async cancel(id) {
      const job = await store.cancel(id);
      return job ? jobToJson(job) : null;
    },
    async list(query) {
      const page = await store.list({ ...query, limit: query.limit ?? 100 });
      return { jobs: page.jobs.map(jobToJson), nextCursor: page.nextCursor };
    },
    onChange(id, listener) {
      return watchJob(store, id, listener);
    },
    close: release,
  };
}

/** The job's JSON is made when first read: most callers only want the id. */
function enqueued(job: Job, created: boolean): Enqueued {
  let json: JobJson | undefined;
  return {
    id: job.id,
    created,
    get job() {
      json ??= jobToJson(job);
      return json;
    },
  };
}

function watchJob(store: Store, id: string, listener: () => void): () => void {
  return store.watch((change) => {
    if (change.type === "external" || (change.type === "job_finished" && change.jobId === id)) {
      listener();
    }
  });
}

function httpBackend(connection: { server: string; token?: string }): Backend {
  const client = new BatonClient({ server: connection.server, token: connection.token ?? null });
  const orNull = async (call: () => Promise<JobJson>) => {
    try {
      return await call();
    } catch (error) {
      if (error instanceof ApiError && error.status === 404) return null;
      throw error;
    }
  };
  const submitBatch = async (inputs: JobInput[]): Promise<Enqueued[]> => {
    if (inputs.length === 1 && inputs[0]) {
      const { job, created } = await client.submit(inputs[0]);
      return [{ id: job.id, created, job }];
    }
    const { jobs, created } = await client.submitBatch(inputs);
    return jobs.map((job, i) => ({ id: job.id, created: created[i] ?? true, job }));
  };
  // Enqueues made while one is on its way go together in the next request, one transaction
  // on the server: 32 callers share a round trip and a commit rather than queue for one each.
  // A batch is all or nothing, so when the server refuses one, each is sent again alone
  // for its own answer (not when the server could not be reached: it may have stored them).
  const submits = new GroupCommit(submitBatch, {
    max: 1_000,
    onFailure: "retry-alone",
    retryable: (error) => error instanceof ApiError,
  });
  return {
    submit: (input) => submits.call(input),
    submitBatch,
    get: (id) => orNull(() => client.get(id)),
    cancel: (id) => orNull(() => client.cancel(id)),
    list: (query) => client.list(query),
    onChange(_id, listener) {
      // No push channel for one job's end yet: look again soon, then less often.
      let delay = 20;
      let timer: NodeJS.Timeout;
      const tick = () => {
        listener();
        delay = Math.min(500, delay * 2);
        timer = setTimeout(tick, delay);
      };
      timer = setTimeout(tick, delay);
      return () => clearTimeout(timer);
    },
    close: () => submits.idle(),
  };
}
