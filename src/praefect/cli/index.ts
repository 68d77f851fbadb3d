// Praefect's subcommands, by the name upstream gives them. Each is `(args, ctx) → exit code`;
// errors they throw are reported by runCommand the way upstream's CLI does (message on stderr,
// exit 1).
import { check } from "./check.js";
import { configurationValidate } from "./configuration.js";
import { type Command, type CommandContext, CommandError, write } from "./context.js";
import { UsageError } from "./flags.js";
import { acceptDataloss, dataloss, metadata, setReplicationFactor, verify } from "./repositories.js";
import { sqlMigrate, sqlMigrateDown, sqlMigrateStatus, sqlPing } from "./sql.js";
import { dialNodes, listStorages } from "./storages.js";
import { removeRepository, trackRepository } from "./tracking.js";

export { type Command, type CommandContext, CommandError } from "./context.js";

export const COMMANDS: Readonly<Record<string, Command>> = {
  "accept-dataloss": acceptDataloss,
  check,
  dataloss,
  "dial-nodes": dialNodes,
  "list-storages": listStorages,
  metadata,
  "remove-repository": removeRepository,
  "set-replication-factor": setReplicationFactor,
  "sql-migrate": sqlMigrate,
  "sql-migrate-down": sqlMigrateDown,
  "sql-migrate-status": sqlMigrateStatus,
  "sql-ping": sqlPing,
  "track-repository": trackRepository,
  verify,
};

/** Subcommands that read no configuration file (their input comes from stdin). */
export const CONFIG_FREE_COMMANDS: Readonly<Record<string, Command>> = {
  "configuration validate": configurationValidate,
};

/**
 * Runs a subcommand (`name` as in COMMANDS, or "configuration validate"), turning what it throws
 * into upstream's output: the message on stderr and exit 1 (usage errors too; CommandError may
 * carry another code). Unknown names print the list of subcommands and exit 2.
 */
export async function runCommand(name: string, args: readonly string[], ctx: CommandContext): Promise<number> {
  const command = COMMANDS[name] ?? CONFIG_FREE_COMMANDS[name];
  if (!command) {
    await write(
      ctx.err,
      `praefect: unknown command ${JSON.stringify(name)}; commands: serve, configuration validate, ${Object.keys(COMMANDS).join(", ")}\n`,
    );
    return 2;
  }
  try {
    return await command(args, ctx);
  } catch (err) {
    const message = err instanceof Error ? err.message : String(err);
    await write(ctx.err, `${message}\n`);
    if (err instanceof CommandError) return err.code;
    if (err instanceof UsageError) return 1;
    return 1;
  }
}
