import type { FastifyInstance } from "fastify";
import { QueueParams, QueueUpdateSchema } from "../../api/schemas.js";
import type { QueueChange, Store } from "../../store/store.js";

/** Queues: list them with their counts; pause, resume, or set a running limit. */
export function registerQueueRoutes(app: FastifyInstance, store: Store): void {
  app.get("/v1/queues", async () => ({ queues: await store.listQueues() }));

  app.put<{ Params: { name: string }; Body: QueueChange }>(
    "/v1/queues/:name",
    { schema: { params: QueueParams, body: QueueUpdateSchema } },
    async (request) => store.updateQueue(request.params.name, request.body),
  );
}
