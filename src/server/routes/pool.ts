import type { FastifyInstance } from "fastify";
import { statsToJson, workerToJson } from "../../api/poolJson.js";
import { StatsQuery, WorkerParams, WorkerUpdateSchema } from "../../api/schemas.js";
import { parseDuration } from "../../core/duration.js";
import { BatonError, invalid } from "../../core/errors.js";
import type { WorkerChange } from "../../core/pool.js";
import type { Store } from "../../store/store.js";

const DEFAULT_STATS_WINDOW_MS = 86_400_000;

/** The worker pool: list it, resize or drain a live worker, and its statistics. */
export function registerPoolRoutes(app: FastifyInstance, store: Store): void {
  app.get("/v1/workers", async () => ({
    workers: (await store.listWorkers()).map(workerToJson),
  }));

  app.patch<{ Params: { name: string }; Body: WorkerChange }>(
    "/v1/workers/:name",
    { schema: { params: WorkerParams, body: WorkerUpdateSchema } },
    async (request) => {
      const { name } = request.params;
      const current = (await store.listWorkers()).find((worker) => worker.name === name);
      if (!current) {
        throw new BatonError("worker_not_found", `there is no worker ${JSON.stringify(name)}`);
      }
      if (current.state === "stopped" || current.state === "lost") {
        throw new BatonError("worker_not_live", `worker ${name} is ${current.state}`);
      }
      const updated = await store.updateWorker(name, request.body);
      if (!updated) throw new BatonError("worker_not_found", `worker ${name} vanished`);
      return workerToJson(updated);
    },
  );

  app.get<{ Querystring: { window?: string } }>(
    "/v1/stats",
    { schema: { querystring: StatsQuery } },
    async (request) => {
      const raw = request.query.window;
      const windowMs = raw === undefined ? DEFAULT_STATS_WINDOW_MS : parseDuration(raw);
      if (windowMs === null || windowMs <= 0) {
        throw invalid("query.window", "must be a duration such as 15m, 1h or 7d");
      }
      return statsToJson(await store.stats(Date.now() - windowMs));
    },
  );
}
