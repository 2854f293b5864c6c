import type { JobJson } from "../../src/api/jobJson.js";
import { eventually } from "./processes.js";

/** The few HTTP calls the end-to-end tests make, against one server. */
export function api(url: string) {
  return {
    async submit(body: object): Promise<string> {
      const response = await fetch(`${url}/v1/jobs`, {
        method: "POST",
        headers: { "content-type": "application/json" },
        body: JSON.stringify(body),
      });
      if (response.status !== 201)
        throw new Error(`submit: ${response.status} ${await response.text()}`);
      return ((await response.json()) as JobJson).id;
    },
    async job(id: string): Promise<JobJson> {
      return (await (await fetch(`${url}/v1/jobs/${id}`)).json()) as JobJson;
    },
    /** Every stored output line of the job, in order, with its attempt and stream. */
    async lines(id: string): Promise<Array<{ line: string; attempt: number; stream: string }>> {
      const all: Array<{ seq: number; line: string; attempt: number; stream: string }> = [];
      for (;;) {
        const after = all.at(-1)?.seq ?? 0;
        const response = await fetch(`${url}/v1/jobs/${id}/logs?after=${after}&limit=1000`);
        const page = (await response.json()) as { events: typeof all };
        if (page.events.length === 0) return all;
        all.push(...page.events);
      }
    },
    /** The job's first output line, once it has one. */
    firstLine(id: string): Promise<string> {
      return eventually(
        async () => {
          const page = (await (await fetch(`${url}/v1/jobs/${id}/logs`)).json()) as {
            events: { line: string }[];
          };
          return page.events[0]?.line;
        },
        10_000,
        `first output line of job ${id}`,
      );
    },
  };
}
