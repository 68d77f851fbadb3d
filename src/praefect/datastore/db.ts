// Small glue over node-postgres shared by the datastore modules: one type for "anything
// that runs a query", a transaction helper, and converters for the column types whose
// default JavaScript mapping is unsafe for us (int8 arrives as a string).
import type pg from "pg";

/** A pool, a checked-out pool client or a plain client: whatever runs one statement. */
export type Queryable = pg.Pool | pg.PoolClient | pg.Client;

/** The SQLSTATE PostgreSQL reports for a unique constraint violation. */
export const UNIQUE_VIOLATION = "23505";

/** Runs `fn` inside BEGIN/COMMIT on one pooled connection, rolling back when it throws. */
export async function withTransaction<T>(pool: pg.Pool, fn: (client: pg.PoolClient) => Promise<T>): Promise<T> {
  const client = await pool.connect();
  try {
    await client.query("BEGIN");
    const result = await fn(client);
    await client.query("COMMIT");
    return result;
  } catch (err) {
    await client.query("ROLLBACK").catch(() => undefined);
    throw err;
  } finally {
    client.release();
  }
}

/** Whether `err` is PostgreSQL's unique violation, optionally on one named constraint or index. */
export function isUniqueViolation(err: unknown, constraint?: string): boolean {
  if (typeof err !== "object" || err === null) return false;
  const e = err as { code?: unknown; constraint?: unknown };
  return e.code === UNIQUE_VIOLATION && (constraint === undefined || e.constraint === constraint);
}

/**
 * int8 columns come back as strings (they may exceed 2^53). Repository IDs, generations and
 * job IDs stay far below that, so we turn them into numbers at the edge.
 */
export function toNumber(value: unknown): number {
  if (typeof value === "number") return value;
  if (typeof value === "string" || typeof value === "bigint") return Number(value);
  throw new TypeError(`expected an integer column, got ${typeof value}`);
}

export function toNumberOrNull(value: unknown): number | null {
  return value === null || value === undefined ? null : toNumber(value);
}

/** timestamptz columns arrive as Date; NULL stays null. */
export function toDateOrNull(value: unknown): Date | null {
  if (value === null || value === undefined) return null;
  if (value instanceof Date) return value;
  return new Date(String(value));
}
