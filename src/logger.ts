import { type Logger, pino } from "pino";

export type { Logger };

/** Baton's own log: JSON lines on stderr, so stdout stays for what commands print. */
export function createLogger(level: string, name = "baton"): Logger {
  return pino(
    { name, level, base: { pid: process.pid } },
    pino.destination({ dest: 2, sync: true }),
  );
}
