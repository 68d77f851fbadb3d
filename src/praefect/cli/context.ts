// What every subcommand gets and returns: its arguments, the streams it writes to, the loaded
// configuration, and an exit code. Subcommands never touch process.* so tests run them in-process.
import type { Writable } from "node:stream";
import type * as grpc from "@grpc/grpc-js";
import type { PraefectConfig } from "../config/schema.js";

export interface CommandContext {
  out: Writable;
  err: Writable;
  /** The configuration from -config; commands that need one fail without it. */
  config?: PraefectConfig;
  /** Standard input, for `configuration validate`. */
  stdin?: string;
}

export type Command = (args: readonly string[], ctx: CommandContext) => Promise<number>;

/** A failure the command reports as upstream does: its message on stderr, exit code 1 (or `code`). */
export class CommandError extends Error {
  override name = "CommandError";
  constructor(
    message: string,
    readonly code = 1,
  ) {
    super(message);
  }
}

export function write(stream: Writable, text: string): Promise<void> {
  return new Promise((resolve, reject) => {
    stream.write(text, (error) => (error ? reject(error) : resolve()));
  });
}

export function requireConfig(ctx: CommandContext): PraefectConfig {
  if (!ctx.config) throw new CommandError('Required flag "config" not set', 2);
  return ctx.config;
}

/** Upstream's unexpectedPositionalArgsError. */
export function rejectPositionals(command: string, positionals: readonly string[]): void {
  if (positionals.length > 0) throw new CommandError(`${command} doesn't accept positional arguments`);
}

const CODE_NAMES: Record<number, string> = {
  0: "OK",
  1: "Canceled",
  2: "Unknown",
  3: "InvalidArgument",
  4: "DeadlineExceeded",
  5: "NotFound",
  6: "AlreadyExists",
  7: "PermissionDenied",
  8: "ResourceExhausted",
  9: "FailedPrecondition",
  10: "Aborted",
  11: "OutOfRange",
  12: "Unimplemented",
  13: "Internal",
  14: "Unavailable",
  15: "DataLoss",
  16: "Unauthenticated",
};

/** How grpc-go prints a status error: `rpc error: code = NotFound desc = repository not found`. */
export function rpcErrorText(code: number, message: string): string {
  return `rpc error: code = ${CODE_NAMES[code] ?? `Code(${code})`} desc = ${message}`;
}

/** A grpc-js error in grpc-go's words; other errors by their message. */
export function describeError(err: unknown): string {
  const e = err as Partial<grpc.ServiceError>;
  if (typeof e.code === "number" && typeof e.details === "string") return rpcErrorText(e.code, e.details);
  return err instanceof Error ? err.message : String(err);
}

function pad(n: number, width = 2): string {
  return String(n).padStart(width, "0");
}

/** Go's time.Time.String() for a UTC time: `2021-04-01 10:04:20.5 +0000 UTC` (fraction trimmed). */
export function goTimeString(date: Date): string {
  const ms = date.getUTCMilliseconds();
  const fraction = ms === 0 ? "" : `.${pad(ms, 3).replace(/0+$/, "")}`;
  return (
    `${date.getUTCFullYear()}-${pad(date.getUTCMonth() + 1)}-${pad(date.getUTCDate())} ` +
    `${pad(date.getUTCHours())}:${pad(date.getUTCMinutes())}:${pad(date.getUTCSeconds())}${fraction} +0000 UTC`
  );
}

/** Go's "2006-01-02T15:04:05" layout, in local time, as sql-migrate's progress lines use. */
export function goLocalTimestamp(date: Date): string {
  return (
    `${date.getFullYear()}-${pad(date.getMonth() + 1)}-${pad(date.getDate())}T` +
    `${pad(date.getHours())}:${pad(date.getMinutes())}:${pad(date.getSeconds())}`
  );
}
