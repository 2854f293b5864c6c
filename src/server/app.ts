import Fastify, {
  type FastifyBaseLogger,
  type FastifyError,
  type FastifyInstance,
  LogController,
} from "fastify";
import { BatonError } from "../core/errors.js";
import type { Logger } from "../logger.js";
import type { Store } from "../store/store.js";
import { sendProblem, toBatonError } from "./problem.js";
import { registerHealthRoutes } from "./routes/health.js";
import { registerJobRoutes } from "./routes/jobs.js";
import { registerLogRoutes } from "./routes/logs.js";
import { registerPoolRoutes } from "./routes/pool.js";
import { registerQueueRoutes } from "./routes/queues.js";
import { registerScheduleRoutes } from "./routes/schedules.js";
import { registerWorkerProtocolRoutes } from "./routes/workerProtocol.js";

export interface AppOptions {
  store: Store;
  logger: Logger;
  maxBodyBytes: number;
  /** When set, every /v1 request must carry `Authorization: Bearer <token>`. */
  token: string | null;
  /** Called to tell live SSE followers to finish (the server is closing). */
  closing?: AbortSignal;
}

/** The control plane's HTTP API, without listening: tests and `baton up` share it. */
export function buildApp(options: AppOptions): FastifyInstance {
  // Fastify's own info lines repeat ours; its warnings and errors still come through.
  const httpLogger: FastifyBaseLogger = options.logger.child(
    { component: "http" },
    { level: options.logger.isLevelEnabled("warn") ? "warn" : options.logger.level },
  );
  const app = Fastify({
    loggerInstance: httpLogger,
    logController: new LogController({ disableRequestLogging: true }),
    bodyLimit: options.maxBodyBytes,
    // Strict validation: a wrong type is an error, not something to coerce; an unknown field
    // is an error, not something to drop silently.
    ajv: {
      customOptions: {
        coerceTypes: false,
        removeAdditional: false,
        useDefaults: false,
        allErrors: true,
      },
    },
    return503OnClosing: true,
  });

  // JSON only: anything else is a 415. An empty JSON body (curl -H 'content-type: …' -X POST)
  // is no body, which body-less endpoints such as cancel accept.
  const parseJson = app.getDefaultJsonParser("error", "error");
  app.removeAllContentTypeParsers();
  app.addContentTypeParser("application/json", { parseAs: "string" }, (request, body, done) => {
    if (body === "") done(null, undefined);
    else void parseJson(request, body as string, done);
  });

  app.setErrorHandler((error: FastifyError, request, reply) =>
    sendProblem(reply, toBatonError(error, options.logger), request.url),
  );
  app.setNotFoundHandler((request, reply) =>
    sendProblem(
      reply,
      new BatonError(
        "route_not_found",
        `${request.method} ${request.url.split("?")[0]} does not exist`,
      ),
      request.url,
    ),
  );

  if (options.token !== null) {
    const expected = `Bearer ${options.token}`;
    app.addHook("onRequest", async (request, reply) => {
      if (!request.url.startsWith("/v1/")) return;
      if (request.headers.authorization !== expected) {
        return sendProblem(reply, new BatonError("unauthorized"), request.url);
      }
    });
  }

  registerHealthRoutes(app, options.store);
  registerJobRoutes(app, options.store);
  registerLogRoutes(app, options.store, options.closing);
  registerQueueRoutes(app, options.store);
  registerPoolRoutes(app, options.store);
  registerScheduleRoutes(app, options.store);
  registerWorkerProtocolRoutes(app, options.store, options.logger);
  return app;
}
