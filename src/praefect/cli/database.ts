// Opening the database for one command, as upstream's openDB does: connect, ping, and close again.
import pg from "pg";
import { pgConnectionConfig } from "../config/database.js";
import type { PraefectConfig } from "../config/schema.js";

/** Opens a small pool and checks it answers; throws `send ping: <reason>` when it does not. */
export async function openDatabase(config: Pick<PraefectConfig, "database">): Promise<pg.Pool> {
  const pool = new pg.Pool({ ...pgConnectionConfig(config.database), max: 4, connectionTimeoutMillis: 30_000 });
  // An idle connection dropped by the server must not crash the command.
  pool.on("error", () => undefined);
  try {
    await pool.query("SELECT 1");
  } catch (err) {
    await pool.end().catch(() => undefined);
    throw new Error(`send ping: ${(err as Error).message}`, { cause: err });
  }
  return pool;
}

/** Runs `fn` with an open pool and closes it afterwards; `prefix` names the failure to open. */
export async function withDatabase<T>(
  config: Pick<PraefectConfig, "database">,
  prefix: string,
  fn: (pool: pg.Pool) => Promise<T>,
): Promise<T> {
  let pool: pg.Pool;
  try {
    pool = await openDatabase(config);
  } catch (err) {
    throw new Error(`${prefix}: ${(err as Error).message}`, { cause: err });
  }
  try {
    return await fn(pool);
  } finally {
    await pool.end().catch(() => undefined);
  }
}
