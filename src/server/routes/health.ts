import type { FastifyInstance } from "fastify";
import { BatonError } from "../../core/errors.js";
import type { Store } from "../../store/store.js";
import { sendProblem } from "../problem.js";

export function registerHealthRoutes(app: FastifyInstance, store: Store): void {
  // Alive: the process answers.
  app.get("/healthz", async () => ({ status: "ok" }));
  // Ready: the store answers too.
  app.get("/readyz", async (request, reply) => {
    try {
      await store.ping();
      return { status: "ready" };
    } catch (error) {
      return sendProblem(
        reply,
        new BatonError(
          "store_unavailable",
          `the store does not answer: ${(error as Error).message}`,
        ),
        request.url,
      );
    }
  });
}
