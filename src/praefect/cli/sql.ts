// The database subcommands: sql-ping, sql-migrate, sql-migrate-status, sql-migrate-down.
import { formatDuration } from "../../shared/config/duration.js";
import { migrate, migrateDown, migrationStatus, planMigrateDown, planMigrations } from "../datastore/migrate.js";
import {
  type CommandContext,
  CommandError,
  goLocalTimestamp,
  goTimeString,
  rejectPositionals,
  requireConfig,
  write,
} from "./context.js";
import { withDatabase } from "./database.js";
import { boolFlag, parseFlags } from "./flags.js";
import { boxTable } from "./table.js";

/** PostgreSQL 11 is the oldest upstream supports. */
const MINIMUM_SERVER_VERSION = 110_000;

/** `praefect sql-ping`: the database answers and is new enough. */
export async function sqlPing(args: readonly string[], ctx: CommandContext): Promise<number> {
  rejectPositionals("sql-ping", parseFlags(args, {}).positionals);
  const config = requireConfig(ctx);
  const subCmd = "praefect sql-ping";
  await withDatabase(config, "sql open", async (pool) => {
    let version: number;
    try {
      const { rows } = await pool.query<{ server_version_num: string }>("SHOW server_version_num");
      version = Number(rows[0]?.server_version_num);
    } catch (err) {
      throw new CommandError(`${subCmd}: fail: get postgres server version: ${(err as Error).message}`);
    }
    if (!(version >= MINIMUM_SERVER_VERSION)) {
      throw new CommandError(`${subCmd}: fail: postgres server version too old: ${version}`);
    }
  });
  await write(ctx.out, `${subCmd}: OK\n`);
  return 0;
}

/** `praefect sql-migrate [-ignore-unknown=true] [-verbose]`. */
export async function sqlMigrate(args: readonly string[], ctx: CommandContext): Promise<number> {
  const { values, positionals } = parseFlags(args, {
    "ignore-unknown": { kind: "bool", default: true },
    verbose: { kind: "bool" },
  });
  rejectPositionals("sql-migrate", positionals);
  const config = requireConfig(ctx);
  const ignoreUnknown = boolFlag(values, "ignore-unknown");
  const verbose = boolFlag(values, "verbose");
  const subCmd = "praefect sql-migrate";
  await withDatabase(config, "sql open", async (pool) => {
    const plan = await planMigrations(pool, { ignoreUnknown });
    if (plan.length === 0) {
      await write(ctx.out, `${subCmd}: all migrations are up\n`);
      return;
    }
    await write(ctx.out, `${subCmd}: migrations to apply: ${plan.length}\n\n`);
    let started = Date.now();
    const lines: Promise<void>[] = [];
    let applied: string[];
    try {
      applied = await migrate(pool, {
        ignoreUnknown,
        onMigration: ({ id, phase, statements }) => {
          if (phase === "start") {
            started = Date.now();
            let text = `=  ${goLocalTimestamp(new Date())} ${id}: migrating\n`;
            // Go prints the statement slice as [stmt1 stmt2].
            if (verbose) text += `\t[${statements.join(" ")}]\n`;
            lines.push(write(ctx.out, text));
          } else {
            const took = formatDuration(Date.now() - started);
            lines.push(write(ctx.out, `== ${goLocalTimestamp(new Date())} ${id}: applied (${took})\n`));
          }
        },
      });
    } catch (err) {
      await Promise.all(lines);
      throw new CommandError(`${goLocalTimestamp(new Date())}: fail: ${(err as Error).message}`);
    }
    await Promise.all(lines);
    await write(ctx.out, `\n${subCmd}: OK (applied ${applied.length} migrations)\n`);
  });
  return 0;
}

/** `praefect sql-migrate-status`: every migration and when it was applied, as a table. */
export async function sqlMigrateStatus(args: readonly string[], ctx: CommandContext): Promise<number> {
  rejectPositionals("sql-migrate-status", parseFlags(args, {}).positionals);
  const config = requireConfig(ctx);
  const rows = await withDatabase(config, "sql open", (pool) => migrationStatus(pool));
  const table = rows.map((row) => [
    row.id,
    row.unknown ? "unknown migration" : row.appliedAt ? goTimeString(row.appliedAt) : "no",
  ]);
  await write(ctx.out, boxTable(["Migration", "Applied"], table));
  return 0;
}

/** `praefect sql-migrate-down [-f] N`: a dry run unless -f. */
export async function sqlMigrateDown(args: readonly string[], ctx: CommandContext): Promise<number> {
  const { values, positionals } = parseFlags(args, { f: { kind: "bool" } });
  if (positionals.length === 0) throw new CommandError("sql-migrate-down requires a single positional argument");
  if (positionals.length > 1) throw new CommandError("sql-migrate-down accepts only single positional argument");
  const config = requireConfig(ctx);
  const text = positionals[0] as string;
  if (!/^[-+]?\d+$/.test(text)) throw new CommandError(`strconv.Atoi: parsing ${JSON.stringify(text)}: invalid syntax`);
  const max = Number(text);
  if (max < 1) throw new CommandError("number of migrations to roll back must be 1 or more");
  await withDatabase(config, "sql open", async (pool) => {
    if (boolFlag(values, "f")) {
      const reverted = await migrateDown(pool, max);
      await write(ctx.out, `OK (applied ${reverted.length} "down" migrations)\n`);
      return;
    }
    const planned = await planMigrateDown(pool, max);
    await write(
      ctx.out,
      `DRY RUN -- would roll back:\n\n${planned.map((m) => `- ${m.id}\n`).join("")}\nTo apply these migrations run with -f\n`,
    );
  });
  return 0;
}
