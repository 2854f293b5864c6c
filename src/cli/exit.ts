/** The CLI's exit codes (DESIGN.md): `baton run` exits with the job's own code instead. */
export const EXIT = {
  ok: 0,
  failed: 1,
  usage: 2,
  unreachable: 3,
} as const;

/** A usage error: bad flag value, missing argument. Printed and exits 2. */
export class UsageError extends Error {
  constructor(message: string) {
    super(message);
    this.name = "UsageError";
  }
}

/** The operation failed in a way already explained to the user; exits with `code`. */
export class ExitError extends Error {
  constructor(
    readonly code: number,
    message = "",
  ) {
    super(message);
    this.name = "ExitError";
  }
}
