import { availableParallelism, hostname, totalmem } from "node:os";
import type { Command } from "commander";
import { type Config, envName, loadConfig, SETTINGS, type SettingName } from "../core/config.js";

/** Adds the flags of the named settings to a command, with their env var and default. */
export function withSettings(command: Command, names: readonly SettingName[]): Command {
  for (const name of names) {
    const def = SETTINGS[name];
    const fallback =
      typeof def.default === "function"
        ? "the machine's"
        : def.default === null
          ? "none"
          : JSON.stringify(def.default);
    command.option(def.flag, `${def.description} [env ${envName(name)}, default ${fallback}]`);
  }
  return command;
}

/** The configuration for a command: its flags over the environment over the defaults. */
export function configOf(command: Command): Config {
  return loadConfig({
    env: process.env,
    flags: command.optsWithGlobals(),
    machine: {
      cpus: availableParallelism(),
      memoryMb: Math.floor(totalmem() / 1_048_576),
      hostname: hostname(),
      pid: process.pid,
    },
  });
}
