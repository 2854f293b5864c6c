import pg from "pg";

/** The PostgreSQL the store benchmarks use (a schema of their own in it). */
export const PG_URL = process.env.BATON_TEST_PG_URL ?? "postgres://postgres@127.0.0.1:5432/test";

/** null when the benchmark PostgreSQL answers, otherwise why not. */
export async function postgresUnreachable(): Promise<string | null> {
  const client = new pg.Client({ connectionString: PG_URL, connectionTimeoutMillis: 3_000 });
  try {
    await client.connect();
    await client.end();
    return null;
  } catch (error) {
    return (error as Error).message;
  }
}

/**
 * A benchmark's backends: SQLite always, PostgreSQL when it answers; otherwise a note says
 * why it was skipped.
 */
export async function sqliteAndPostgres<B>(
  sqlite: () => B,
  postgres: () => B,
): Promise<{ backends: B[]; notes: string[] }> {
  const unreachable = await postgresUnreachable();
  if (unreachable === null) return { backends: [sqlite(), postgres()], notes: [] };
  return {
    backends: [sqlite()],
    notes: [`PostgreSQL skipped: ${PG_URL} is unreachable (${unreachable}).`],
  };
}
