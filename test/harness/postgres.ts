// Per-suite access to the run's PostgreSQL server (see global-setup.ts).
import pg from "pg";
import { inject } from "vitest";
import { createDatabase, uniqueDatabaseName } from "../../src/local/postgres.js";

export interface TestDatabase {
  name: string;
  url: string;
  /** A pool on this database; closed by `drop`. */
  pool: pg.Pool;
  /** Closes the pool and drops the database. */
  drop(): Promise<void>;
}

function adminUrl(database: string): string {
  const { host, port, user, password } = inject("postgres");
  return `postgres://${user}:${encodeURIComponent(password)}@${host}:${port}/${database}`;
}

/** Creates an empty database with a unique name for one suite. */
export async function freshDatabase(prefix = "suite"): Promise<TestDatabase> {
  const name = uniqueDatabaseName(prefix);
  await createDatabase(adminUrl("postgres"), name);
  const url = adminUrl(name);
  const pool = new pg.Pool({ connectionString: url, max: 10 });
  // DROP DATABASE ... WITH (FORCE) terminates connections that are still closing;
  // node-postgres reports that as an error on the idle client, which is expected here.
  pool.on("error", () => {});
  return {
    name,
    url,
    pool,
    async drop() {
      await pool.end();
      const c = new pg.Client({ connectionString: adminUrl("postgres") });
      await c.connect();
      try {
        await c.query(`DROP DATABASE IF EXISTS "${name}" WITH (FORCE)`);
      } finally {
        await c.end();
      }
    },
  };
}
