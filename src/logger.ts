import { type Logger, pino } from "pino";
import pretty from "pino-pretty";

export type { Logger };

/**
 * Baton's own log, on stderr so that stdout stays for what commands print: JSON lines for
 * machines, or readable lines when a person is watching a terminal.
 */
export function createLogger(level: string, format: "auto" | "json" | "pretty" = "auto"): Logger {
  const options = { name: "baton", level, base: { pid: process.pid } };
  const readable = format === "pretty" || (format === "auto" && process.stderr.isTTY === true);
  if (readable) {
    return pino(
      options,
      pretty({
        destination: 2,
        sync: true,
        translateTime: "SYS:HH:MM:ss.l",
        ignore: "pid,hostname,name",
        singleLine: true,
      }),
    );
  }
  return pino(options, pino.destination({ dest: 2, sync: true }));
}
