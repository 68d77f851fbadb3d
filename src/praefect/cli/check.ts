// `praefect check [-q]`: upstream's four start-up checks, each with 5 s to finish.
import type { Writable } from "node:stream";
import { type PraefectConfig, storageNames, virtualStorageNames } from "../config/schema.js";
import { planMigrations } from "../datastore/migrate.js";
import { RepositoryStore } from "../datastore/repositories.js";
import { type CommandContext, CommandError, rejectPositionals, requireConfig, write } from "./context.js";
import { withDatabase } from "./database.js";
import { boolFlag, parseFlags } from "./flags.js";
import { pingAll, pingErrorMessage } from "./ping.js";

export type Severity = "warning" | "fatal";

export interface Check {
  name: string;
  description: string;
  severity: Severity;
  run(timeoutMs: number): Promise<void>;
}

export type CheckFactory = (config: PraefectConfig, out: Writable, quiet: boolean) => Check;

const CHECK_TIMEOUT_MS = 5_000;

function say(quiet: boolean, out: Writable, text: string): Promise<void> {
  return quiet ? Promise.resolve() : write(out, `${text}\n`);
}

export const migrationCheck: CheckFactory = (config) => ({
  name: "praefect migrations",
  description: "confirms whether or not all praefect migrations have run",
  severity: "fatal",
  run: () =>
    withDatabase(config, "sql open", async (pool) => {
      const missing = (await planMigrations(pool, { ignoreUnknown: true })).length;
      if (missing > 0) throw new Error(`${missing} migrations have not been run`);
    }),
});

export const nodeConnectivityCheck: CheckFactory = (config, out, quiet) => ({
  name: "gitaly node connectivity & disk access",
  description:
    "confirms if praefect can reach all of its gitaly nodes, and whether or not the gitaly nodes can read/write from and to its storages.",
  severity: "fatal",
  async run(timeoutMs) {
    const unhealthy = await pingAll(config, (text) => write(out, text), { timeoutMs, quiet });
    if (unhealthy.length > 0) throw new Error(pingErrorMessage(unhealthy));
  },
});

export const databaseReadWriteCheck: CheckFactory = (config, out, quiet) => ({
  name: "database read/write",
  description: "checks if praefect can write/read to and from the database",
  severity: "fatal",
  run: () =>
    withDatabase(config, "error opening database connection", async (pool) => {
      const client = await pool.connect();
      try {
        await client.query("BEGIN");
        try {
          await client.query("SELECT id FROM hello_world");
        } catch (err) {
          throw new Error(`error reading from table: ${(err as Error).message}`);
        }
        await say(quiet, out, "successfully read from database");
        let inserted: number;
        try {
          inserted = (await client.query("INSERT INTO hello_world (id) VALUES(1)")).rowCount ?? 0;
        } catch (err) {
          throw new Error(`error writing to table: ${(err as Error).message}`);
        }
        if (inserted !== 1) throw new Error("failed to insert row");
        await say(quiet, out, "successfully wrote to database");
      } finally {
        await client.query("ROLLBACK").catch(() => undefined);
        client.release();
      }
    }),
});

export const unavailableRepositoriesCheck: CheckFactory = (config, out, quiet) => ({
  name: "unavailable repositories",
  description: "lists repositories that are missing a valid primary, hence rendering them unavailable",
  severity: "warning",
  run: () =>
    withDatabase(config, "error opening database connection", async (pool) => {
      const counts = await new RepositoryStore(pool, storageNames(config)).countUnavailableRepositories(
        virtualStorageNames(config),
      );
      const unavailable = Object.entries(counts).filter(([, n]) => n > 0);
      if (unavailable.length === 0) {
        await say(quiet, out, "All repositories are available.");
        return;
      }
      for (const [vs, n] of unavailable) {
        await say(
          quiet,
          out,
          n === 1
            ? `virtual-storage ${JSON.stringify(vs)} has ${n} repository that is unavailable.`
            : `virtual-storage ${JSON.stringify(vs)} has ${n} repositories that are unavailable.`,
        );
      }
      throw new Error("repositories unavailable");
    }),
});

export const DEFAULT_CHECKS: readonly CheckFactory[] = [
  migrationCheck,
  nodeConnectivityCheck,
  databaseReadWriteCheck,
  unavailableRepositoriesCheck,
];

async function withTimeout(check: Check): Promise<void> {
  let timer: NodeJS.Timeout | undefined;
  try {
    await Promise.race([
      check.run(CHECK_TIMEOUT_MS),
      new Promise<never>((_, reject) => {
        timer = setTimeout(() => reject(new Error("context deadline exceeded")), CHECK_TIMEOUT_MS);
      }),
    ]);
  } finally {
    clearTimeout(timer);
  }
}

/** Builds `praefect check` over the given checks (tests pass their own). */
export function checkCommand(factories: readonly CheckFactory[] = DEFAULT_CHECKS) {
  return async (args: readonly string[], ctx: CommandContext): Promise<number> => {
    const { values, positionals } = parseFlags(args, { q: { kind: "bool" } });
    rejectPositionals("check", positionals);
    const config = requireConfig(ctx);
    const quiet = boolFlag(values, "q");
    let passed = true;
    let failed = 0;
    for (const factory of factories) {
      const check = factory(config, ctx.out, quiet);
      await write(
        ctx.out,
        quiet ? `Checking ${check.name}...` : `Checking ${check.name} - ${check.description} [${check.severity}]\n`,
      );
      try {
        await withTimeout(check);
        await write(ctx.out, "Passed\n");
      } catch (err) {
        failed++;
        if (check.severity === "fatal") passed = false;
        await write(ctx.out, `Failed (${check.severity}) error: ${(err as Error).message}\n`);
      }
    }
    await write(ctx.out, "\n");
    if (!passed) {
      await write(ctx.out, `${failed} check(s) failed, at least one was fatal.\n`);
      throw new CommandError("checks failed");
    }
    await write(ctx.out, failed > 0 ? `${failed} check(s) failed, but none are fatal.\n` : "All checks passed.\n");
    return 0;
  };
}

export const check = checkCommand();
