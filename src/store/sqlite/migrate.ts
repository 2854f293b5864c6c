import type Database from "better-sqlite3";
import { type Migration, MIGRATIONS } from "./migrations.js";

/**
 * Applies the migrations this database has not seen, in one IMMEDIATE transaction so that
 * processes starting at once do not both apply them. Refuses a database migrated by a
 * newer Baton rather than running against a schema it does not know. (`migrations`: all of
 * them but for tests of a migration, which stop short of it.)
 */
export function migrate(
  db: Database.Database,
  path: string,
  migrations: readonly Migration[] = MIGRATIONS,
): void {
  db.exec(`CREATE TABLE IF NOT EXISTS schema_migrations (
    version INTEGER PRIMARY KEY, name TEXT NOT NULL, applied_at INTEGER NOT NULL)`);
  const latest = migrations.at(-1)?.version ?? 0;
  db.transaction(() => {
    const row = db
      .prepare("SELECT COALESCE(MAX(version), 0) AS version FROM schema_migrations")
      .get() as {
      version: number;
    };
    if (row.version > latest) {
      throw new Error(
        `${path} has schema version ${row.version}, newer than this Baton knows (${latest}); ` +
          "upgrade Baton before using this database",
      );
    }
    const record = db.prepare(
      "INSERT INTO schema_migrations (version, name, applied_at) VALUES (?, ?, ?)",
    );
    for (const migration of migrations) {
      if (migration.version <= row.version) continue;
      db.exec(migration.sql);
      record.run(migration.version, migration.name, Date.now());
    }
  }).immediate();
}
