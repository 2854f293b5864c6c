import type { JobJson } from "../api/jobJson.js";
import type { StatsJson, WorkerJson } from "../api/poolJson.js";
import type { Explanation } from "../core/explain.js";
import type { WorkerChange } from "../core/pool.js";
import type { ScheduleJson } from "../api/scheduleJson.js";
import type { ScheduleInput } from "../api/schemas.js";
import type { QueueChange, QueueInfo } from "../core/queue.js";
import type { JobState } from "../core/job.js";
import type { JobInput } from "../core/jobInput.js";
import type { LogEvent, LogStream } from "../core/logEvent.js";
import type { Problem } from "../api/problem.js";
import { ApiError, UnreachableError } from "./errors.js";
import { parseSse } from "./sse.js";

export interface ClientOptions {
  server: string;
  token?: string | null;
}

export interface LogFilter {
  attempt?: number | undefined;
  stream?: LogStream | undefined;
}

/** How a followed job ended (the `end` event of the log stream). */
export interface JobEnd {
  state: JobState;
  exitCode: number | null;
  signal: string | null;
  failure: { reason: string; message: string } | null;
}

export type FollowItem = { type: "log"; event: LogEvent } | { type: "end"; end: JobEnd };

const RECONNECT_FOR_MS = 30_000;

/** The HTTP API, typed, for the CLI (and later the SDK). */
export class BatonClient {
  private readonly endpoint: Endpoint;

  constructor(options: ClientOptions) {
    this.endpoint = endpointOf(options);
  }

  async submit(input: JobInput): Promise<{ job: JobJson; created: boolean }> {
    const response = await this.request("POST", "/v1/jobs", input);
    return { job: (await response.json()) as JobJson, created: response.status === 201 };
  }

  /** Submits jobs in one transaction: all are stored, or none (the error names the entry). */
  async submitBatch(inputs: readonly JobInput[]): Promise<{ jobs: JobJson[]; created: boolean[] }> {
    return this.json("POST", "/v1/jobs/batch", { jobs: inputs });
  }

  async queues(): Promise<QueueInfo[]> {
    return (await this.json<{ queues: QueueInfo[] }>("GET", "/v1/queues")).queues;
  }

  async updateQueue(name: string, change: QueueChange): Promise<QueueInfo> {
    const path = `/v1/queues/${encodeURIComponent(name)}`;
    return this.json("PUT", path, change);
  }

  async workers(): Promise<WorkerJson[]> {
    return (await this.json<{ workers: WorkerJson[] }>("GET", "/v1/workers")).workers;
  }

  /** Resizes a live worker or asks it to drain. */
  async updateWorker(name: string, change: WorkerChange): Promise<WorkerJson> {
    return this.json("PATCH", `/v1/workers/${encodeURIComponent(name)}`, change);
  }

  /** Pool statistics over the last `window` (a duration such as 1h; default a day). */
  async stats(window?: string): Promise<StatsJson> {
    return this.json("GET", `/v1/stats${queryString({ window })}`);
  }

  /** Why a job is not running. */
  async explain(id: string): Promise<Explanation> {
    return this.json("GET", `/v1/jobs/${encodeURIComponent(id)}/explain`);
  }

  /** Puts a failed or cancelled job back in line with a fresh set of attempts. */
  async retry(id: string): Promise<JobJson> {
    return this.json("POST", `/v1/jobs/${encodeURIComponent(id)}/retry`);
  }

  /** Dead letters: failed jobs with no attempts left, newest first. */
  async deadLetters(query: {
    queue?: string | undefined;
    limit?: number | undefined;
    cursor?: string | undefined;
  }): Promise<{ jobs: JobJson[]; nextCursor: string | null }> {
    return this.json("GET", `/v1/dlq${queryString(query)}`);
  }

  async replay(
    which: { ids: string[] } | { all: true; queue?: string },
  ): Promise<{ jobs: JobJson[]; skipped: string[] }> {
    return this.json("POST", "/v1/dlq/replay", which);
  }

  async schedules(): Promise<ScheduleJson[]> {
    return (await this.json<{ schedules: ScheduleJson[] }>("GET", "/v1/schedules")).schedules;
  }

  /** Creates or replaces a schedule. */
  async putSchedule(
    name: string,
    input: ScheduleInput,
  ): Promise<{ schedule: ScheduleJson; created: boolean }> {
    const response = await this.request("PUT", schedulePath(name), input);
    return { schedule: (await response.json()) as ScheduleJson, created: response.status === 201 };
  }

  async pauseSchedule(name: string, paused: boolean): Promise<ScheduleJson> {
    return this.json("PATCH", schedulePath(name), { paused });
  }

  async removeSchedule(name: string): Promise<void> {
    await this.request("DELETE", schedulePath(name));
  }

  async get(id: string): Promise<JobJson> {
    return this.json("GET", `/v1/jobs/${encodeURIComponent(id)}`);
  }

  async list(query: {
    state?: string | undefined;
    queue?: string | undefined;
    limit?: number | undefined;
    cursor?: string | undefined;
  }): Promise<{ jobs: JobJson[]; nextCursor: string | null }> {
    return this.json("GET", `/v1/jobs${queryString(query)}`);
  }

  async cancel(id: string): Promise<JobJson> {
    return this.json("POST", `/v1/jobs/${encodeURIComponent(id)}/cancel`);
  }

  async logs(
    id: string,
    after: number,
    filter: LogFilter = {},
  ): Promise<{ events: LogEvent[]; next: number; state: JobState }> {
    const path = `/v1/jobs/${encodeURIComponent(id)}/logs${queryString({ after, ...filter })}`;
    return this.json("GET", path);
  }

  /**
   * Follows a job's log over SSE until the job ends, reconnecting with Last-Event-ID when
   * the connection drops (no gap, no duplicate), for up to 30 s without success.
   */
  async *follow(id: string, after = 0, filter: LogFilter = {}): AsyncGenerator<FollowItem> {
    let lastSeq = after;
    let failingSince: number | null = null;
    for (;;) {
      let response: Response;
      try {
        response = await this.request(
          "GET",
          `/v1/jobs/${encodeURIComponent(id)}/logs${queryString({ follow: 1, ...filter })}`,
          undefined,
          { "last-event-id": String(lastSeq), accept: "text/event-stream" },
        );
      } catch (error) {
        if (!(error instanceof UnreachableError)) throw error;
        failingSince ??= Date.now();
        if (Date.now() - failingSince > RECONNECT_FOR_MS) throw error;
        await new Promise((resolve) => setTimeout(resolve, 500));
        continue;
      }
      failingSince = null;
      if (!response.body) throw new Error("the server sent an empty log stream");
      try {
        for await (const event of parseSse(response.body)) {
          if (event.event === "end") {
            yield { type: "end", end: JSON.parse(event.data) as JobEnd };
            return;
          }
          if (event.event === "message") {
            const log = JSON.parse(event.data) as LogEvent;
            lastSeq = log.seq;
            yield { type: "log", event: log };
          }
        }
      } catch {
        // The connection dropped mid-stream; reconnect from the last line seen.
      }
    }
  }

  private async json<T>(method: string, path: string, body?: unknown): Promise<T> {
    return (await (await this.request(method, path, body)).json()) as T;
  }

  private async request(
    method: string,
    path: string,
    body?: unknown,
    extraHeaders: Record<string, string> = {},
  ): Promise<Response> {
    return sendRequest(this.endpoint, method, path, body, { headers: extraHeaders });
  }
}

/** A Baton server and the headers every request to it carries (the bearer token). */
export interface Endpoint {
  server: string;
  headers: Readonly<Record<string, string>>;
}

export function endpointOf(options: ClientOptions): Endpoint {
  return {
    server: options.server.replace(/\/+$/, ""),
    headers: options.token ? { authorization: `Bearer ${options.token}` } : {},
  };
}

/**
 * Sends one request with a JSON body (if any). A server that cannot be reached (or does not
 * answer before `signal` aborts) is an UnreachableError; an answer other than 2xx is an
 * ApiError carrying the server's problem document.
 */
export async function sendRequest(
  endpoint: Endpoint,
  method: string,
  path: string,
  body?: unknown,
  init: { headers?: Record<string, string>; signal?: AbortSignal } = {},
): Promise<Response> {
  const headers: Record<string, string> = { ...endpoint.headers, ...init.headers };
  if (body !== undefined) headers["content-type"] = "application/json";
  let response: Response;
  try {
    response = await fetch(`${endpoint.server}${path}`, {
      method,
      headers,
      body: body === undefined ? null : JSON.stringify(body),
      signal: init.signal ?? null,
    });
  } catch (error) {
    throw new UnreachableError(endpoint.server, error);
  }
  if (response.ok) return response;
  const text = await response.text();
  let problem: Problem;
  try {
    problem = JSON.parse(text) as Problem;
  } catch {
    problem = {
      type: "about:blank",
      title: response.statusText,
      status: response.status,
      detail: text || response.statusText,
      instance: path,
      code: "internal",
    };
  }
  throw new ApiError(problem);
}

function schedulePath(name: string): string {
  return `/v1/schedules/${encodeURIComponent(name)}`;
}

function queryString(params: Record<string, string | number | undefined>): string {
  const search = new URLSearchParams();
  for (const [key, value] of Object.entries(params)) {
    if (value !== undefined) search.set(key, String(value));
  }
  const text = search.toString();
  return text === "" ? "" : `?${text}`;
}
