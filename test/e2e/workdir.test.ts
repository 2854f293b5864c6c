import { execFileSync } from "node:child_process";
import { existsSync } from "node:fs";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { type Daemon, baton, startBaton, tempDir } from "../helpers/processes.js";

let daemon: Daemon;
let env: Record<string, string>;
const dir = tempDir();
const stuckFiles: string[] = [];

beforeAll(async () => {
  const started = await startBaton(["--data-dir", dir.path], { BATON_LOG_FORMAT: "json" });
  daemon = started.daemon;
  env = { BATON_SERVER: started.url };
});
afterAll(async () => {
  await daemon.stop();
  for (const file of stuckFiles) execFileSync("chattr", ["-i", file]);
  dir.remove();
});

describe("per-attempt job directories", () => {
  it("are fresh for each attempt and removed afterwards", async () => {
    const script = 'echo "[$(ls -A)]"; echo "$BATON_WORKDIR"; pwd; touch junk';
    const result = await baton(["run", "--", "sh", "-c", script], { env });
    expect(result.code).toBe(0);
    const [listing, workDir, cwd] = result.stdout.split("\n");
    expect(listing).toBe("[]");
    expect(cwd).toBe(workDir);
    expect(workDir).toMatch(/\/work\/\d+\.1$/);
    expect(existsSync(workDir as string)).toBe(false);
  });

  it("log a failed removal as an error naming the path", async (context) => {
    // An immutable file (chattr +i) defeats even root's rm; skip where that is not possible.
    const result = await baton(
      ["run", "--", "sh", "-c", 'touch stuck && chattr +i stuck && echo "$BATON_WORKDIR"'],
      { env },
    );
    if (result.code !== 0) {
      context.skip(`chattr +i is not available here: ${result.stderr.trim()}`);
      return;
    }
    const workDir = result.stdout.trim();
    stuckFiles.push(`${workDir}/stuck`);
    const line = await daemon.waitForLog(/\{[^\n]*could not remove job directory[^\n]*\}/);
    const entry = JSON.parse(line[0]) as { level: number; path: string; msg: string };
    expect(entry.level).toBe(50); // error
    expect(entry.path).toBe(workDir);
    expect(entry.msg).toContain(workDir);
  });
});
