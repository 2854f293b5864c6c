import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { JobJson } from "../../src/api/jobJson.js";
import { baton, type Daemon, startBaton, tempDir } from "../helpers/processes.js";

let daemon: Daemon;
let url: string;
let accepted: JobJson;
const dir = tempDir();

beforeAll(async () => {
  ({ daemon, url } = await startBaton(["--data-dir", dir.path]));
  const response = await post(
    "/v1/jobs",
    JSON.stringify({ command: ["true"], delayMs: 3_600_000 }),
  );
  expect(response.status).toBe(201);
  accepted = (await response.json()) as JobJson;
});
afterAll(async () => {
  await daemon.stop();
  dir.remove();
});

function post(path: string, body: string, contentType = "application/json"): Promise<Response> {
  return fetch(`${url}${path}`, { method: "POST", headers: { "content-type": contentType }, body });
}

interface ProblemJson {
  type: string;
  title: string;
  status: number;
  detail: string;
  code: string;
  errors?: { field: string; message: string }[];
}

async function problem(response: Response, status: number): Promise<ProblemJson> {
  expect(response.status).toBe(status);
  expect(response.headers.get("content-type")).toMatch(/^application\/problem\+json/);
  const body = (await response.json()) as ProblemJson;
  expect(body.status).toBe(status);
  expect(body.type).toMatch(/^urn:baton:problem:/);
  expect(body.title).not.toBe("");
  return body;
}

describe("bad HTTP input", () => {
  it("answers malformed JSON with 400", async () => {
    const body = await problem(await post("/v1/jobs", '{"command": ["echo",'), 400);
    expect(body.code).toBe("malformed_json");
  });

  it.each([
    ["a command that is not an array", { command: "echo hi" }, "command"],
    ["an argument that is not a string", { command: ["echo", 42] }, "command[1]"],
    ["a priority given as a string", { command: ["true"], priority: "5" }, "priority"],
    ["priority 0", { command: ["true"], priority: 0 }, "priority"],
    ["priority 11", { command: ["true"], priority: 11 }, "priority"],
    ["a fractional priority", { command: ["true"], priority: 2.5 }, "priority"],
    ["negative cpus", { command: ["true"], resources: { cpus: -1 } }, "resources.cpus"],
    ["an empty command", { command: [] }, "command"],
    ["an empty program name", { command: [""] }, "command"],
    ["no command at all", { queue: "default" }, "command"],
    ["an unknown field", { command: ["true"], colour: "red" }, "colour"],
    ["an unknown nested field", { command: ["true"], resources: { gpus: 1 } }, "resources.gpus"],
    ["a bad runAt", { command: ["true"], runAt: "tomorrow" }, "runAt"],
    ["an env value that is not a string", { command: ["true"], env: { N: 1 } }, "env.N"],
  ])("rejects %s with 400 naming the field", async (_what, input, field) => {
    const body = await problem(await post("/v1/jobs", JSON.stringify(input)), 400);
    expect(body.code).toBe("validation_failed");
    expect(body.errors?.map((e) => e.field)).toContain(field);
    expect(body.detail).toContain(field);
  });

  it("rejects a body that is not JSON with 415 and an oversized one with 413", async () => {
    expect((await problem(await post("/v1/jobs", "command=true", "text/plain"), 415)).code).toBe(
      "unsupported_media_type",
    );
    const huge = JSON.stringify({ script: `echo ${"x".repeat(1_100_000)}` });
    expect((await problem(await post("/v1/jobs", huge), 413)).code).toBe("body_too_large");
  });

  it("answers unknown jobs and routes with 404", async () => {
    for (const path of ["/v1/jobs/999999", "/v1/jobs/abc", "/v1/jobs/999999/logs"]) {
      const body = await problem(await fetch(`${url}${path}`), 404);
      expect(body.code).toBe("job_not_found");
    }
    expect((await problem(await post("/v1/jobs/999999/cancel", ""), 404)).code).toBe(
      "job_not_found",
    );
    expect((await problem(await fetch(`${url}/v1/nothing`), 404)).code).toBe("route_not_found");
  });

  it("rejects bad query parameters", async () => {
    const body = await problem(await fetch(`${url}/v1/jobs?state=done`), 400);
    expect(body.errors?.[0]?.field).toBe("query.state");
  });

  it("stays up and leaves the accepted job untouched", async () => {
    expect((await fetch(`${url}/healthz`)).status).toBe(200);
    expect((await fetch(`${url}/readyz`)).status).toBe(200);
    const now = (await (await fetch(`${url}/v1/jobs/${accepted.id}`)).json()) as JobJson;
    expect(now).toEqual(accepted);
  });
});

describe("CLI usage errors", () => {
  const env = () => ({ BATON_SERVER: url });

  it.each([
    [["submit", "--no-such-flag", "--", "true"], /unknown option '--no-such-flag'/],
    [["submit"], /nothing to run/],
    [["submit", "--priority", "0", "--", "true"], /priority.*invalid/],
    [["submit", "--timeout", "soon", "--", "true"], /expected a duration/],
    [["submit", "--env", "=x", "--", "true"], /expected KEY=VALUE/],
    [["jobs", "show"], /missing required argument 'id'/],
    [["frobnicate"], /unknown command 'frobnicate'/],
  ])("baton %j exits 2 with a message", async (args, message) => {
    const result = await baton(args, { env: env() });
    expect(result.code).toBe(2);
    expect(result.stderr).toMatch(message);
  });

  it("exits 2 for a bad setting in the environment, naming it", async () => {
    const result = await baton(["up"], { env: { BATON_PORT: "http" } });
    expect(result.code).toBe(2);
    expect(result.stderr).toContain('BATON_PORT="http": must be an integer');
  });

  it("exits 2 when the server rejects a value, 1 for an unknown job", async () => {
    const bad = await baton(["submit", "--cwd", "relative/dir", "--", "true"], { env: env() });
    expect(bad.code).toBe(2);
    expect(bad.stderr).toContain("cwd: must be an absolute path");
    const missing = await baton(["jobs", "show", "999999"], { env: env() });
    expect(missing.code).toBe(1);
    expect(missing.stderr).toContain('there is no job "999999"');
  });

  it("exits 3 when the server cannot be reached", async () => {
    const result = await baton(["jobs", "--server", "http://127.0.0.1:9"]);
    expect(result.code).toBe(3);
    expect(result.stderr).toContain("cannot reach Baton at http://127.0.0.1:9");
  });
});
