// node-postgres connection settings from [database], the way upstream's glsql.DSN builds its DSN:
// the main connection uses [database] alone; the direct one (LISTEN/NOTIFY) takes each key from
// [database.session_pooled], falling back to the deprecated *_no_proxy keys and then to [database].
// Keys left empty are left out, so libpq's environment (PGHOST, PGUSER, PGPASSWORD, PGDATABASE,
// PGPORT, PGSSLMODE…) fills them in, as pgx does for upstream.
import { readFileSync } from "node:fs";
import type { ConnectionOptions } from "node:tls";
import type pg from "pg";
import type { DatabaseConfig, DatabaseConnectionConfig } from "./schema.js";

function first(...values: string[]): string {
  return values.find((v) => v !== "") ?? "";
}

function firstPort(...values: number[]): number {
  return values.find((v) => v > 0) ?? 0;
}

/** The effective connection keys: [database] itself, or the direct connection's. */
export function connectionKeys(db: DatabaseConfig, direct = false): DatabaseConnectionConfig {
  if (!direct) {
    const { session_pooled: _sp, host_no_proxy: _h, port_no_proxy: _p, ...main } = db;
    return main;
  }
  const sp = db.session_pooled;
  return {
    host: first(sp.host, db.host_no_proxy, db.host),
    port: firstPort(sp.port, db.port_no_proxy, db.port),
    user: first(sp.user, db.user),
    password: first(sp.password, db.password),
    dbname: first(sp.dbname, db.dbname),
    sslmode: first(sp.sslmode, db.sslmode),
    sslcert: first(sp.sslcert, db.sslcert),
    sslkey: first(sp.sslkey, db.sslkey),
    sslrootcert: first(sp.sslrootcert, db.sslrootcert),
  };
}

/**
 * Whether anything configures the direct connection. Upstream enables the read cache (which needs
 * LISTEN) only then: its DSN for the direct connection is empty otherwise.
 */
export function hasDirectConnection(db: DatabaseConfig): boolean {
  return Object.values(connectionKeys(db, true)).some((v) => v !== "" && v !== 0);
}

function sslOptions(keys: DatabaseConnectionConfig): false | ConnectionOptions | undefined {
  const mode = keys.sslmode || process.env.PGSSLMODE || "";
  const read = (path: string) => (path === "" ? undefined : readFileSync(path));
  switch (mode) {
    case "":
    case "disable":
    case "allow":
    case "prefer":
      // libpq tries TLS first for prefer/allow; node-postgres cannot fall back, so plain is the portable choice.
      return mode === "" ? undefined : false;
    case "require":
      return { rejectUnauthorized: false, cert: read(keys.sslcert), key: read(keys.sslkey) };
    case "verify-ca":
      return {
        ca: read(keys.sslrootcert),
        cert: read(keys.sslcert),
        key: read(keys.sslkey),
        // verify-ca checks the chain but not the host name.
        checkServerIdentity: () => undefined,
      };
    case "verify-full":
      return { ca: read(keys.sslrootcert), cert: read(keys.sslcert), key: read(keys.sslkey) };
    default:
      throw new Error(`sslmode is invalid: ${JSON.stringify(mode)}`);
  }
}

/**
 * pg.ClientConfig for [database] (or, with `direct`, for the session-pooled connection). A `host`
 * starting with "/" is a Unix socket directory, as in libpq.
 */
export function pgConnectionConfig(db: DatabaseConfig, options: { direct?: boolean } = {}): pg.ClientConfig {
  const keys = connectionKeys(db, options.direct ?? false);
  const config: pg.ClientConfig = {};
  if (keys.host !== "") config.host = keys.host;
  if (keys.port > 0) config.port = keys.port;
  if (keys.user !== "") config.user = keys.user;
  if (keys.password !== "") config.password = keys.password;
  if (keys.dbname !== "") config.database = keys.dbname;
  const ssl = sslOptions(keys);
  if (ssl !== undefined) config.ssl = ssl;
  return config;
}

/** `host:port` as upstream logs it when connecting ("database_address"). */
export function databaseAddress(db: DatabaseConfig): string {
  return `${db.host}:${db.port}`;
}
