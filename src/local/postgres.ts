// A PostgreSQL server built from the system's binaries, on loopback with password
// authentication. Two kinds:
//   - throwaway (the default): initdb into a temp directory, a random password, fsync off,
//     everything deleted on stop. The test suites use it as their real database.
//   - persistent (`dataDir` + `password`): initdb only when the directory is empty, the data
//     kept on stop and reused by the next start. The local cluster keeps Praefect's
//     database in its state directory this way.

import { spawnSync } from "node:child_process";
import { randomBytes } from "node:crypto";
import {
  chmodSync,
  chownSync,
  existsSync,
  mkdirSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  rmSync,
  writeFileSync,
} from "node:fs";
import { tmpdir } from "node:os";
import { dirname, isAbsolute, join } from "node:path";
import pg from "pg";
import { freePort, waitFor } from "../shared/net.js";
import {
  lookupUser,
  type ManagedProcess,
  type ManagedProcessOptions,
  startProcess,
  type UnixUser,
} from "../shared/process.js";
import { inOwnSession } from "./cluster/session.js";

export interface PostgresOptions {
  /** Directory with initdb and postgres; found automatically when unset. */
  binDir?: string;
  /** Parent of the server's temp directory. */
  baseDir?: string;
  /** Keep durability settings (fsync, synchronous_commit); off by default for speed. */
  durable?: boolean;
  /** Extra `-c name=value` settings. */
  settings?: Record<string, string>;
  /**
   * A persistent data directory (absolute): initialised when missing or empty, reused
   * otherwise, kept on stop(). Needs `password`, the superuser's password it was (or is to
   * be) initialised with. Without it the server lives in a temp directory deleted on stop().
   */
  dataDir?: string;
  /** The superuser's password; random when unset (only allowed for a throwaway server). */
  password?: string;
  /** Where the server logs (appended); default next to the data directory. */
  logFile?: string;
  /** Listen on this port instead of a free one. */
  port?: number;
  /**
   * Run initdb and postgres in a session of their own, so a terminal's Ctrl-C reaches only
   * our process, which then stops the server when it is its turn.
   */
  ownSession?: boolean;
}

export interface PostgresServer {
  readonly host: string;
  readonly port: number;
  readonly user: string;
  readonly password: string;
  readonly dataDir: string;
  readonly logFile: string;
  /** The postmaster's pid. */
  readonly pid: number;
  /** A connection URL for `database` (default `postgres`). */
  url(database?: string): string;
  /** Creates an empty database with a unique name and returns its name. */
  createDatabase(prefix?: string): Promise<string>;
  /** Stops the server; a throwaway server's directory is deleted, a persistent data directory kept. */
  stop(): Promise<void>;
}

const SUPERUSER = "postgres";

/** Finds PostgreSQL's server binaries: $PG_BINDIR, Debian's versioned dirs, then PATH. */
export function findPostgresBinDir(): string {
  const fromEnv = process.env.PG_BINDIR;
  if (fromEnv && existsSync(join(fromEnv, "initdb"))) return fromEnv;
  const debian = "/usr/lib/postgresql";
  if (existsSync(debian)) {
    const versions = readdirSync(debian)
      .filter((v) => existsSync(join(debian, v, "bin", "postgres")))
      .sort((a, b) => Number(b) - Number(a));
    if (versions[0]) return join(debian, versions[0], "bin");
  }
  const which = spawnSync("sh", ["-c", "command -v initdb"], { encoding: "utf8" });
  const initdb = which.stdout.trim();
  if (which.status === 0 && initdb) return initdb.slice(0, initdb.lastIndexOf("/"));
  throw new Error("PostgreSQL server binaries (initdb, postgres) not found; install PostgreSQL or set PG_BINDIR");
}

/** PostgreSQL refuses to run as root: the unprivileged account it runs as when we are root, else undefined. */
export function postgresServerUser(): UnixUser | undefined {
  if (process.getuid?.() !== 0) return undefined;
  const user = lookupUser("postgres") ?? lookupUser("nobody");
  if (!user) throw new Error("running as root and found neither a 'postgres' nor a 'nobody' user to run PostgreSQL as");
  return user;
}

function tail(file: string, lines = 20): string {
  try {
    return readFileSync(file, "utf8").trimEnd().split("\n").slice(-lines).join("\n");
  } catch {
    return "(no log)";
  }
}

let counter = 0;

/** A database name no other suite or process will pick. */
export function uniqueDatabaseName(prefix: string): string {
  const clean = prefix.replace(/[^a-z0-9_]/gi, "_").toLowerCase();
  return `${clean}_${process.pid}_${++counter}_${randomBytes(3).toString("hex")}`;
}

/** Runs CREATE DATABASE through a superuser connection URL. */
export async function createDatabase(adminUrl: string, name: string): Promise<void> {
  if (!/^[a-z_][a-z0-9_]*$/.test(name)) throw new Error(`invalid database name ${JSON.stringify(name)}`);
  const client = new pg.Client({ connectionString: adminUrl });
  await client.connect();
  try {
    await client.query(`CREATE DATABASE "${name}"`);
  } finally {
    await client.end();
  }
}

/** True when `dir` holds an initialised cluster (initdb writes PG_VERSION last but one). */
function isInitialised(dir: string): boolean {
  return existsSync(join(dir, "PG_VERSION"));
}

function isEmptyOrMissing(dir: string): boolean {
  return !existsSync(dir) || readdirSync(dir).length === 0;
}

/** Runs initdb into `dataDir` with `password` for the superuser. */
async function initdb(options: {
  binDir: string;
  dataDir: string;
  password: string;
  logFile: string;
  user: UnixUser | undefined;
  noSync: boolean;
  ownSession: boolean;
}): Promise<void> {
  // initdb reads the password from a file; it lives in a private temp dir the server user can read.
  const pwDir = mkdtempSync(join(tmpdir(), "gitaly-pg-init-"));
  const pwFile = join(pwDir, "pwfile");
  try {
    writeFileSync(pwFile, `${options.password}\n`, { mode: 0o600 });
    if (options.user) {
      chownSync(pwDir, options.user.uid, options.user.gid);
      chownSync(pwFile, options.user.uid, options.user.gid);
    }
    const args = [
      "-D",
      options.dataDir,
      "-U",
      SUPERUSER,
      "--pwfile",
      pwFile,
      "--auth=scram-sha-256",
      "-E",
      "UTF8",
      "--locale=C",
      ...(options.noSync ? ["--no-sync"] : []),
    ];
    const code = await run(join(options.binDir, "initdb"), args, options);
    if (code !== 0) throw new Error(`initdb failed (${code}):\n${tail(options.logFile)}`);
  } finally {
    rmSync(pwDir, { recursive: true, force: true });
  }
}

function launch(
  command: string,
  args: string[],
  options: { logFile: string; user: UnixUser | undefined; ownSession: boolean },
): ManagedProcess {
  const wrapped = options.ownSession ? inOwnSession(command, args) : { command, args };
  const processOptions: ManagedProcessOptions = {
    logFile: options.logFile,
    ...(options.user ? { user: options.user } : {}),
  };
  return startProcess(wrapped.command, wrapped.args, processOptions);
}

function run(
  command: string,
  args: string[],
  options: { logFile: string; user: UnixUser | undefined; ownSession: boolean },
): Promise<number | string> {
  return launch(command, args, options).exited;
}

export async function startPostgres(options: PostgresOptions = {}): Promise<PostgresServer> {
  const binDir = options.binDir ?? findPostgresBinDir();
  const user = postgresServerUser();
  const ownSession = options.ownSession ?? false;
  const persistent = options.dataDir !== undefined;
  if (persistent && !isAbsolute(options.dataDir as string)) {
    throw new Error(`PostgreSQL data directory ${JSON.stringify(options.dataDir)} is not an absolute path`);
  }
  if (persistent && !options.password) throw new Error("a persistent PostgreSQL data directory needs a password");

  // A throwaway server keeps everything (data, log, socket) in one temp dir removed on stop.
  const root = persistent ? undefined : mkdtempSync(join(options.baseDir ?? tmpdir(), "gitaly-pg-"));
  const dataDir = options.dataDir ?? join(root as string, "data");
  const logFile = options.logFile ?? (root ? join(root, "postgres.log") : join(dirname(dataDir), "postgres.log"));
  const password = options.password ?? randomBytes(18).toString("base64url");
  const discard = () => {
    if (root) rmSync(root, { recursive: true, force: true });
  };
  writeFileSync(logFile, "", { flag: "a" });
  if (root) {
    if (user) chownSync(root, user.uid, user.gid);
    chmodSync(root, 0o700);
  }

  if (!persistent || isEmptyOrMissing(dataDir)) {
    mkdirSync(dataDir, { recursive: true, mode: 0o700 });
    if (user) chownSync(dataDir, user.uid, user.gid);
    chmodSync(dataDir, 0o700);
    try {
      await initdb({ binDir, dataDir, password, logFile, user, noSync: !options.durable, ownSession });
    } catch (err) {
      discard();
      // A half-initialised directory would be taken for a cluster next time; start over then.
      if (persistent) for (const entry of readdirSync(dataDir)) rmSync(join(dataDir, entry), { recursive: true });
      throw err;
    }
  } else if (!isInitialised(dataDir)) {
    throw new Error(`${dataDir} is neither empty nor a PostgreSQL data directory (no PG_VERSION)`);
  }

  const settings: Record<string, string> = {
    listen_addresses: "127.0.0.1",
    // A persistent server is reached over TCP only: a socket path under a deep state directory
    // could exceed the 107 bytes a unix socket path may have.
    unix_socket_directories: root ?? "",
    max_connections: "300",
    ...(options.durable ? {} : { fsync: "off", synchronous_commit: "off", full_page_writes: "off" }),
    ...options.settings,
  };

  // A free port is picked before postgres binds it; on a lost race try another.
  let proc: ManagedProcess | undefined;
  let port = 0;
  const attempts = options.port ? 1 : 5;
  for (let attempt = 0; attempt < attempts && !proc; attempt++) {
    port = options.port ?? (await freePort());
    const args = ["-D", dataDir, "-p", String(port)];
    for (const [k, v] of Object.entries(settings)) args.push("-c", `${k}=${v}`);
    const candidate = launch(join(binDir, "postgres"), args, { logFile, user, ownSession });
    let refused: Error | undefined;
    try {
      await waitFor(
        `PostgreSQL on 127.0.0.1:${port}`,
        async () => {
          if (candidate.child.exitCode !== null || candidate.child.signalCode !== null) {
            throw new Error("postgres exited");
          }
          const client = new pg.Client({ host: "127.0.0.1", port, user: SUPERUSER, password, database: "postgres" });
          try {
            await client.connect();
          } catch (err) {
            // A wrong password will not get better by waiting: stop at once.
            if ((err as { code?: string }).code === "28P01") {
              refused = new Error(`PostgreSQL in ${dataDir} refused the password: ${(err as Error).message}`);
              return true;
            }
            throw err;
          }
          await client.end();
          return true;
        },
        { timeoutMs: 30_000, intervalMs: 50 },
      );
      if (refused) throw refused;
      proc = candidate;
    } catch (err) {
      await candidate.stop("SIGQUIT", 2_000);
      if (refused || !tail(logFile).includes("could not bind") || options.port) {
        const log = tail(logFile);
        discard();
        throw new Error(`PostgreSQL did not start: ${(err as Error).message}\n${log}`);
      }
    }
  }
  if (!proc) {
    discard();
    throw new Error(`PostgreSQL could not bind a free port after ${attempts} attempts`);
  }
  const running = proc;

  const url = (database = "postgres") =>
    `postgres://${SUPERUSER}:${encodeURIComponent(password)}@127.0.0.1:${port}/${encodeURIComponent(database)}`;

  return {
    host: "127.0.0.1",
    port,
    user: SUPERUSER,
    password,
    dataDir,
    logFile,
    pid: running.pid,
    url,
    async createDatabase(prefix = "test") {
      const name = uniqueDatabaseName(prefix);
      await createDatabase(url(), name);
      return name;
    },
    async stop() {
      // SIGINT is PostgreSQL's "fast" shutdown: it disconnects clients instead of waiting.
      await running.stop("SIGINT", 10_000);
      discard();
    },
  };
}
