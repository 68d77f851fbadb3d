// Parameter shapes and TOML building blocks both renderers share. Parameters are plain data:
// addresses, paths, names, flags. Secrets are referred to by FILE PATH only, so a rendered config
// can live in a ConfigMap.
import { stringify } from "smol-toml";
import { formatDuration } from "../config/duration.js";
import type { LogLevel, TlsVersion } from "../config/sections.js";

export type TomlValue = string | number | boolean | TomlValue[] | TomlTableOut;
export interface TomlTableOut {
  [key: string]: TomlValue;
}

/** A TLS listener: its address and the key pair mounted from a Secret. */
export interface TlsListenerParams {
  /** host:port, e.g. "0.0.0.0:8076". */
  listenAddr: string;
  certificatePath: string;
  keyPath: string;
  minVersion?: TlsVersion;
}

/** [auth]: the token is read from `tokenFile` (mounted from a Secret); absent = authentication off. */
export interface AuthParams {
  tokenFile: string;
  /** Accept unauthenticated or wrongly authenticated calls while a token is being rotated in. */
  transitioning?: boolean;
}

export interface LoggingParams {
  /** Default "json" (what log collectors in a cluster expect). */
  format?: "json" | "text";
  /** Default "info". */
  level?: LogLevel;
}

/**
 * Keeps the keys whose value is defined and, for tables and arrays of tables, not empty, in the
 * order given. Key order is the order in the file, so golden files stay stable.
 */
export function table(entries: Record<string, TomlValue | undefined>): TomlTableOut {
  const out: TomlTableOut = {};
  for (const [key, value] of Object.entries(entries)) {
    if (value === undefined) continue;
    if (Array.isArray(value) && value.length === 0) continue;
    out[key] = value;
  }
  return out;
}

/** A table that is left out entirely when nothing in it is set. */
export function optionalTable(entries: Record<string, TomlValue | undefined>): TomlTableOut | undefined {
  const t = table(entries);
  return Object.keys(t).length === 0 ? undefined : t;
}

/** Milliseconds as the Go duration string the loaders parse ("1m0s", "500ms"). */
export function duration(ms: number | undefined): string | undefined {
  if (ms === undefined) return undefined;
  if (!Number.isFinite(ms) || ms < 0) throw new Error(`duration ${ms}ms is not a finite, non-negative number`);
  return formatDuration(ms);
}

export function requireText(what: string, value: string): string {
  if (value.trim() === "") throw new Error(`${what} is empty`);
  return value;
}

export function requireAbsolutePath(what: string, value: string): string {
  if (!value.startsWith("/")) throw new Error(`${what} must be an absolute path, got ${JSON.stringify(value)}`);
  return value;
}

export function authTable(auth: AuthParams | undefined): TomlTableOut | undefined {
  if (auth === undefined) return undefined;
  return table({
    token_file: requireAbsolutePath("auth token file", auth.tokenFile),
    transitioning: auth.transitioning ?? false,
  });
}

export function tlsTable(tls: TlsListenerParams | undefined): TomlTableOut | undefined {
  if (tls === undefined) return undefined;
  return table({
    certificate_path: requireAbsolutePath("TLS certificate path", tls.certificatePath),
    key_path: requireAbsolutePath("TLS key path", tls.keyPath),
    min_version: tls.minVersion,
  });
}

export function loggingTable(logging: LoggingParams | undefined): TomlTableOut {
  return table({ format: logging?.format ?? "json", level: logging?.level ?? "info" });
}

export function toToml(doc: TomlTableOut, header: string): string {
  const comment = header
    .split("\n")
    .map((line) => `# ${line}`.trimEnd())
    .join("\n");
  return `${comment}\n\n${stringify(doc).trimEnd()}\n`;
}
