/**
 * The thumbnails example (examples/thumbnails) as a newcomer runs it: compiled with its own
 * tsconfig against the built package (`import … from "baton"`; `npm test` builds first), then
 * run as a process of its own. Checks what its user would look at: the thumbnails, the
 * report in the outbox, the output and the exit code; and that a second run finds the same
 * jobs by their idempotency keys instead of doing the work again.
 */
import { execFile } from "node:child_process";
import { readdirSync, readFileSync } from "node:fs";
import { join, resolve } from "node:path";
import { promisify } from "node:util";
import { afterEach, beforeAll, beforeEach, describe, expect, it } from "vitest";
import { tempDir } from "../helpers/processes.js";
import { dropSchema, PG_URL, postgresAvailable, testSchema } from "../helpers/stores.js";

const run = promisify(execFile);
const ROOT = resolve(import.meta.dirname, "../..");
const EXAMPLE = join(ROOT, "examples/thumbnails");
const MAIN = join(EXAMPLE, "dist/main.js");

/** A PNG's width and height, from its header. */
function pngSize(path: string): [number, number] {
  const bytes = readFileSync(path);
  expect(bytes.subarray(1, 4).toString("latin1")).toBe("PNG");
  return [bytes.readUInt32BE(16), bytes.readUInt32BE(20)];
}

/** Runs the example to its end; rejects (with its output) if it exits with another code. */
async function runExample(env: Record<string, string>) {
  const { stdout, stderr } = await run(process.execPath, [MAIN], {
    cwd: ROOT,
    env: { ...process.env, ...env },
    timeout: 20_000,
  });
  return { stdout, stderr };
}

function expectFirstRun(dir: string, stdout: string) {
  const thumbnails = join(dir, "thumbnails");
  expect(readdirSync(thumbnails).sort()).toEqual([
    "checkerboard-240w.png",
    "mandelbrot-240w.png",
    "sunset-240w.png",
  ]);
  // Scaled to 240 px across, in proportion: 1600x1000, 960x720 and 1024x1024.
  expect(pngSize(join(thumbnails, "sunset-240w.png"))).toEqual([240, 150]);
  expect(pngSize(join(thumbnails, "mandelbrot-240w.png"))).toEqual([240, 180]);
  expect(pngSize(join(thumbnails, "checkerboard-240w.png"))).toEqual([240, 240]);

  expect(stdout).toContain("enqueued 4 thumbnail jobs in one batch: 4 new");
  expect(stdout).toMatch(/ok +job \d+ +sunset\.png -> .*sunset-240w\.png +240x150, \d+ bytes/);
  expect(stdout).toMatch(/ok +job \d+ +mandelbrot\.png -> .*240x180/);
  expect(stdout).toMatch(/ok +job \d+ +checkerboard\.png -> .*240x240/);
  // The missing picture fails at once (NonRetryableError), and the pipeline goes on.
  expect(stdout).toMatch(
    /FAILED +job \d+ +missing\.png: no such picture: .*\(failed after 1 attempt/,
  );
  expect(stdout).toMatch(/\[worker\] job \d+ makeThumbnail failed on attempt 1 \(no retry\)/);
  expect(stdout).toMatch(/report: job \d+ \(new\)/);

  const outbox = readdirSync(join(dir, "outbox"));
  expect(outbox).toHaveLength(1);
  const eml = readFileSync(join(dir, "outbox", outbox[0]!), "latin1");
  expect(eml).toContain("To: photos@example.com\r\n");
  expect(eml).toMatch(/^Message-ID: <report-\d+\.\d+@thumbnails\.baton\.example>\r$/m);
  expect(eml).toContain("missing.png: no such picture");
  expect(eml.match(/^Content-Disposition: attachment; filename=".*-240w\.png"\r$/gm)).toHaveLength(
    3,
  );
  // The attachment is the thumbnail itself.
  const attached =
    /filename="sunset-240w\.png"\r\nContent-Transfer-Encoding: base64\r\n\r\n([^-]*)/.exec(
      eml,
    )?.[1];
  expect(Buffer.from(attached ?? "", "base64")).toEqual(
    readFileSync(join(thumbnails, "sunset-240w.png")),
  );
  return outbox;
}

function expectSecondRun(dir: string, stdout: string, outbox: string[]) {
  expect(stdout).toContain("enqueued 4 thumbnail jobs in one batch: 0 new, 4 found");
  expect(stdout).toMatch(/report: job \d+ \(found by its idempotency key, not sent again\)/);
  expect(stdout).not.toContain("[worker]");
  expect(readdirSync(join(dir, "outbox"))).toEqual(outbox);
}

describe("the thumbnails example", () => {
  let dir: ReturnType<typeof tempDir>;

  beforeAll(async () => {
    const tsc = join(ROOT, "node_modules/typescript/bin/tsc");
    await run(process.execPath, [tsc, "-p", EXAMPLE], { cwd: ROOT, timeout: 60_000 });
  }, 60_000);

  beforeEach(() => {
    dir = tempDir("baton-example-");
  });

  afterEach(() => dir.remove());

  it("makes the thumbnails and sends the report (SQLite), and a second run does nothing again", async () => {
    const env = { THUMBNAILS_DIR: dir.path, BATON_STORE: `sqlite:${dir.path}/jobs.db` };
    const first = await runExample(env);
    const outbox = expectFirstRun(dir.path, first.stdout);
    const second = await runExample(env);
    expectSecondRun(dir.path, second.stdout, outbox);
  });

  it("runs the same on PostgreSQL (BATON_STORE, BATON_SCHEMA)", async (context) => {
    if (!(await postgresAvailable())) context.skip();
    const schema = testSchema();
    const env = { THUMBNAILS_DIR: dir.path, BATON_STORE: PG_URL, BATON_SCHEMA: schema };
    try {
      const first = await runExample(env);
      expect(first.stdout).toContain(`store: ${PG_URL} (schema ${schema})`);
      const outbox = expectFirstRun(dir.path, first.stdout);
      const second = await runExample(env);
      expectSecondRun(dir.path, second.stdout, outbox);
    } finally {
      await dropSchema(schema);
    }
  });
});
