import type { Problem } from "../api/problem.js";

/** The server answered with a problem document. */
export class ApiError extends Error {
  constructor(readonly problem: Problem) {
    super(problem.detail);
    this.name = "ApiError";
  }

  get status(): number {
    return this.problem.status;
  }
}

/** The server could not be reached at all. */
export class UnreachableError extends Error {
  constructor(
    readonly serverUrl: string,
    cause: unknown,
  ) {
    const reason = describeCause(cause);
    super(
      `cannot reach Baton at ${serverUrl} (${reason}); is it running? Start one with \`baton up\``,
    );
    this.name = "UnreachableError";
  }
}

function describeCause(cause: unknown): string {
  const inner = (cause as { cause?: { code?: string; message?: string } })?.cause;
  return inner?.code ?? inner?.message ?? (cause as Error)?.message ?? String(cause);
}
