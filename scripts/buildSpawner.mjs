// Compiles the job spawner (native/spawner.c) into dist/native. Without a C compiler the
// build still succeeds: the job supervisor then starts jobs with Node, more slowly.
import { execFileSync } from "node:child_process";
import { mkdirSync, rmSync, statSync } from "node:fs";
import process from "node:process";

const source = "native/spawner.c";
const target = "dist/native/baton-spawner";
const compiler = process.env.CC || "cc";

const builtAt = statSync(target, { throwIfNoEntry: false })?.mtimeMs ?? 0;
if (builtAt < statSync(source).mtimeMs) {
  mkdirSync("dist/native", { recursive: true });
  try {
    execFileSync(compiler, ["-O2", "-Wall", "-o", target, source], { stdio: "inherit" });
  } catch (error) {
    // A binary left from older source would speak an older protocol.
    rmSync(target, { force: true });
    process.stderr.write(
      `warning: could not compile ${source} with ${compiler} (${error.message}); ` +
        "shell jobs will be started by Node, more slowly\n",
    );
  }
}
