// Applies and reverts the schema migrations, bookkept in `schema_migrations` exactly as
// rubenv/sql-migrate does it (one row per applied ID with its time), so upstream Praefect and
// this program read each other's bookkeeping: an upstream-migrated database needs nothing here.
import { setTimeout as delay } from "node:timers/promises";
import type pg from "pg";
import { UnknownMigrationError } from "./errors.js";
import { allMigrations, type Migration } from "./migrations/index.js";

export type { Migration } from "./migrations/index.js";
export { allMigrations } from "./migrations/index.js";

export const MIGRATION_TABLE = "schema_migrations";

/**
 * Serialises concurrent `migrate` runs from several Praefects (sql-migrate itself does not).
 * Any key works as long as nothing else uses it; the reconciler uses 1.
 */
const MIGRATION_LOCK_KEY = 7_155_043_961;

export interface MigrationStatusRow {
  id: string;
  /** When it was applied; null when it is not. */
  appliedAt: Date | null;
  /** Applied, but not one of ours (a newer Praefect wrote it). */
  unknown: boolean;
}

export interface MigrateOptions {
  /** Apply migrations up to and including this ID only. */
  to?: string;
  /** Proceed although the database records migrations we do not know (upstream's -ignore-unknown). */
  ignoreUnknown?: boolean;
  /** Called before and after each migration, e.g. for `sql-migrate -verbose` output. */
  onMigration?: (event: { id: string; phase: "start" | "done"; statements: readonly string[] }) => void;
  /** The migration set; all of them unless a test narrows it. */
  migrations?: readonly Migration[];
}

/** Orders IDs like sql-migrate: by the numeric prefix, then by the whole ID. */
export function compareMigrationIds(a: string, b: string): number {
  const na = numericPrefix(a);
  const nb = numericPrefix(b);
  if (na !== nb) return na < nb ? -1 : 1;
  return a < b ? -1 : a > b ? 1 : 0;
}

function numericPrefix(id: string): bigint {
  const digits = /^\d+/.exec(id)?.[0];
  return digits ? BigInt(digits) : -1n;
}

async function ensureMigrationTable(db: pg.ClientBase | pg.Pool): Promise<void> {
  await db.query(
    `CREATE TABLE IF NOT EXISTS ${MIGRATION_TABLE} (id text NOT NULL PRIMARY KEY, applied_at timestamptz)`,
  );
}

async function appliedRecords(db: pg.ClientBase | pg.Pool): Promise<Map<string, Date | null>> {
  await ensureMigrationTable(db);
  const { rows } = await db.query<{ id: string; applied_at: Date | null }>(
    `SELECT id, applied_at FROM ${MIGRATION_TABLE}`,
  );
  return new Map(rows.map((r) => [r.id, r.applied_at]));
}

/** IDs recorded as applied that this program does not know, in order. */
export async function unknownAppliedMigrations(
  db: pg.ClientBase | pg.Pool,
  migrations: readonly Migration[] = allMigrations,
): Promise<string[]> {
  const known = new Set(migrations.map((m) => m.id));
  const applied = await appliedRecords(db);
  return [...applied.keys()].filter((id) => !known.has(id)).sort(compareMigrationIds);
}

/** Every known migration plus any unknown applied one, sorted by ID, with its applied time. */
export async function migrationStatus(
  db: pg.ClientBase | pg.Pool,
  migrations: readonly Migration[] = allMigrations,
): Promise<MigrationStatusRow[]> {
  const applied = await appliedRecords(db);
  const rows = new Map<string, MigrationStatusRow>();
  for (const m of migrations) rows.set(m.id, { id: m.id, appliedAt: null, unknown: false });
  for (const [id, appliedAt] of applied) {
    rows.set(id, { id, appliedAt: appliedAt ?? null, unknown: !rows.has(id) });
  }
  return [...rows.values()].sort((a, b) => (a.id < b.id ? -1 : a.id > b.id ? 1 : 0));
}

function sorted(migrations: readonly Migration[]): Migration[] {
  return [...migrations].sort((a, b) => compareMigrationIds(a.id, b.id));
}

/**
 * The migrations `migrate` would apply, in order. Like sql-migrate, this is every known migration
 * missing from the database that sorts before the newest applied one (a "catch-up"), followed by
 * those after it; a newest applied migration we do not know therefore stops further upgrades.
 */
export async function planMigrations(db: pg.ClientBase | pg.Pool, options: MigrateOptions = {}): Promise<Migration[]> {
  const migrations = sorted(options.migrations ?? allMigrations);
  const applied = await appliedRecords(db);
  const unknown = [...applied.keys()].filter((id) => !migrations.some((m) => m.id === id)).sort(compareMigrationIds);
  if (unknown.length > 0 && !options.ignoreUnknown) throw new UnknownMigrationError(unknown[0] as string);

  let candidates = migrations;
  if (options.to !== undefined) {
    const end = migrations.findIndex((m) => m.id === options.to);
    if (end < 0) throw new Error(`unknown migration ${JSON.stringify(options.to)}`);
    candidates = migrations.slice(0, end + 1);
  }
  const newestApplied = [...applied.keys()].sort(compareMigrationIds).at(-1);
  // Past an unknown newest migration only catch-ups apply: that schema is newer than ours.
  const newestIsKnown = newestApplied === undefined || migrations.some((m) => m.id === newestApplied);
  return candidates.filter(
    (m) => !applied.has(m.id) && (newestIsKnown || compareMigrationIds(m.id, newestApplied as string) < 0),
  );
}

/**
 * Waits for the migration lock by polling pg_try_advisory_lock: a session blocked inside
 * pg_advisory_lock counts as a running transaction, and CREATE INDEX CONCURRENTLY in the
 * lock holder would wait for it forever (a deadlock PostgreSQL reports).
 */
async function withMigrationLock<T>(pool: pg.Pool, fn: (client: pg.PoolClient) => Promise<T>): Promise<T> {
  const client = await pool.connect();
  try {
    for (;;) {
      const { rows } = await client.query<{ locked: boolean }>("SELECT pg_try_advisory_lock($1) AS locked", [
        MIGRATION_LOCK_KEY,
      ]);
      if (rows[0]?.locked) break;
      await delay(100);
    }
    try {
      return await fn(client);
    } finally {
      await client.query("SELECT pg_advisory_unlock($1)", [MIGRATION_LOCK_KEY]);
    }
  } finally {
    client.release();
  }
}

async function runStatements(
  client: pg.PoolClient,
  statements: readonly string[],
  record: string,
  recordArgs: unknown[],
  transactional: boolean,
): Promise<void> {
  if (!transactional) {
    for (const statement of statements) await client.query(statement);
    await client.query(record, recordArgs);
    return;
  }
  await client.query("BEGIN");
  try {
    for (const statement of statements) await client.query(statement);
    await client.query(record, recordArgs);
    await client.query("COMMIT");
  } catch (err) {
    await client.query("ROLLBACK").catch(() => undefined);
    throw err;
  }
}

function migrationError(id: string, direction: "up" | "down", err: unknown): Error {
  const reason = err instanceof Error ? err.message : String(err);
  return new Error(`migration ${id} (${direction}) failed: ${reason}`, { cause: err });
}

/** Applies pending migrations in order, each in its own transaction; returns the applied IDs. */
export async function migrate(pool: pg.Pool, options: MigrateOptions = {}): Promise<string[]> {
  return withMigrationLock(pool, async (client) => {
    const plan = await planMigrations(client, options);
    const applied: string[] = [];
    for (const m of plan) {
      options.onMigration?.({ id: m.id, phase: "start", statements: m.up });
      try {
        await runStatements(
          client,
          m.up,
          `INSERT INTO ${MIGRATION_TABLE} (id, applied_at) VALUES ($1, now())`,
          [m.id],
          !m.upWithoutTransaction,
        );
      } catch (err) {
        throw migrationError(m.id, "up", err);
      }
      applied.push(m.id);
      options.onMigration?.({ id: m.id, phase: "done", statements: m.up });
    }
    return applied;
  });
}

/** The IDs `migrateDown(max)` would revert, newest first (sql-migrate-down's dry run). */
export async function planMigrateDown(
  db: pg.ClientBase | pg.Pool,
  max: number,
  migrations: readonly Migration[] = allMigrations,
): Promise<Migration[]> {
  if (!Number.isInteger(max) || max < 1) throw new Error("number of migrations to roll back must be 1 or more");
  const unknown = await unknownAppliedMigrations(db, migrations);
  if (unknown.length > 0) throw new UnknownMigrationError(unknown[0] as string);
  const applied = await appliedRecords(db);
  return sorted(migrations)
    .filter((m) => applied.has(m.id))
    .reverse()
    .slice(0, max);
}

/** Reverts the newest `max` applied migrations, newest first; returns the reverted IDs. */
export async function migrateDown(
  pool: pg.Pool,
  max: number,
  migrations: readonly Migration[] = allMigrations,
): Promise<string[]> {
  return withMigrationLock(pool, async (client) => {
    const plan = await planMigrateDown(client, max, migrations);
    const reverted: string[] = [];
    for (const m of plan) {
      try {
        await runStatements(client, m.down, `DELETE FROM ${MIGRATION_TABLE} WHERE id = $1`, [m.id], true);
      } catch (err) {
        throw migrationError(m.id, "down", err);
      }
      reverted.push(m.id);
    }
    return reverted;
  });
}
