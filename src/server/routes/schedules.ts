import type { FastifyInstance } from "fastify";
import { scheduleToJson } from "../../api/scheduleJson.js";
import {
  type ScheduleInput,
  ScheduleInputSchema,
  ScheduleParams,
  ScheduleUpdateSchema,
} from "../../api/schemas.js";
import { BatonError } from "../../core/errors.js";
import { checkJobTemplate, DEFAULT_MISSED_POLICY, DEFAULT_TIMEZONE } from "../../core/schedule.js";
import { parseLiveCron } from "../../scheduling/cron.js";
import type { Store } from "../../store/store.js";

function notFound(name: string): BatonError {
  return new BatonError("schedule_not_found", `there is no schedule ${JSON.stringify(name)}`);
}

type Named = { Params: { name: string } };

/** Cron schedules: create or replace, list, show, pause and resume, remove. */
export function registerScheduleRoutes(app: FastifyInstance, store: Store): void {
  app.get("/v1/schedules", async () => ({
    schedules: (await store.listSchedules()).map(scheduleToJson),
  }));

  app.get<Named>("/v1/schedules/:name", { schema: { params: ScheduleParams } }, async (request) => {
    const schedule = await store.getSchedule(request.params.name);
    if (!schedule) throw notFound(request.params.name);
    return scheduleToJson(schedule);
  });

  app.put<Named & { Body: ScheduleInput }>(
    "/v1/schedules/:name",
    { schema: { params: ScheduleParams, body: ScheduleInputSchema } },
    async (request, reply) => {
      const { cron, job } = request.body;
      const timezone = request.body.timezone ?? DEFAULT_TIMEZONE;
      parseLiveCron(cron, timezone, Date.now());
      checkJobTemplate(job, Date.now());
      const { schedule, created } = await store.putSchedule({
        name: request.params.name,
        cron,
        timezone,
        missed: request.body.missed ?? DEFAULT_MISSED_POLICY,
        job,
      });
      return reply.status(created ? 201 : 200).send(scheduleToJson(schedule));
    },
  );

  app.patch<Named & { Body: { paused: boolean } }>(
    "/v1/schedules/:name",
    { schema: { params: ScheduleParams, body: ScheduleUpdateSchema } },
    async (request) => {
      const schedule = await store.pauseSchedule(request.params.name, request.body.paused);
      if (!schedule) throw notFound(request.params.name);
      return scheduleToJson(schedule);
    },
  );

  app.delete<Named>(
    "/v1/schedules/:name",
    { schema: { params: ScheduleParams } },
    async (request, reply) => {
      if (!(await store.removeSchedule(request.params.name))) throw notFound(request.params.name);
      return reply.status(204).send();
    },
  );
}
