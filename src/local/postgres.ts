// A throwaway PostgreSQL server built from the system's binaries: initdb into a temp
// directory, postgres on a free loopback port, password authentication, and fsync
// off (the data is disposable). The local cluster uses it as Praefect's embedded
// default database; the test suites use it as their real database.

import { spawnSync } from "node:child_process";
import { randomBytes } from "node:crypto";
import {
  chmodSync,
  chownSync,
  existsSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  rmSync,
  writeFileSync,
} from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import pg from "pg";
import { freePort, waitFor } from "../shared/net.js";
import { lookupUser, type ManagedProcess, startProcess, type UnixUser } from "../shared/process.js";

export interface PostgresOptions {
  /** Directory with initdb and postgres; found automatically when unset. */
  binDir?: string;
  /** Parent of the server's temp directory. */
  baseDir?: string;
  /** Keep durability settings (fsync, synchronous_commit); off by default for speed. */
  durable?: boolean;
  /** Extra `-c name=value` settings. */
  settings?: Record<string, string>;
}

export interface PostgresServer {
  readonly host: string;
  readonly port: number;
  readonly user: string;
  readonly password: string;
  readonly dataDir: string;
  readonly logFile: string;
  /** A connection URL for `database` (default `postgres`). */
  url(database?: string): string;
  /** Creates an empty database with a unique name and returns its name. */
  createDatabase(prefix?: string): Promise<string>;
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

/** PostgreSQL refuses to run as root; pick an unprivileged account when we are root. */
function serverUser(): UnixUser | undefined {
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

export async function startPostgres(options: PostgresOptions = {}): Promise<PostgresServer> {
  const binDir = options.binDir ?? findPostgresBinDir();
  const root = mkdtempSync(join(options.baseDir ?? tmpdir(), "gitaly-pg-"));
  const dataDir = join(root, "data");
  const logFile = join(root, "postgres.log");
  const password = randomBytes(18).toString("base64url");
  const user = serverUser();
  const pwFile = join(root, "pwfile");
  writeFileSync(pwFile, `${password}\n`, { mode: 0o600 });
  writeFileSync(logFile, "");
  if (user) {
    chownSync(root, user.uid, user.gid);
    chownSync(pwFile, user.uid, user.gid);
    chownSync(logFile, user.uid, user.gid);
  }
  chmodSync(root, 0o700);

  const initdbArgs = [
    "-D",
    dataDir,
    "-U",
    SUPERUSER,
    "--pwfile",
    pwFile,
    "--auth=scram-sha-256",
    "-E",
    "UTF8",
    "--locale=C",
    "--no-sync",
  ];
  const init = startProcess(join(binDir, "initdb"), initdbArgs, { logFile, ...(user ? { user } : {}) });
  const initCode = await init.exited;
  rmSync(pwFile, { force: true });
  if (initCode !== 0) {
    const log = tail(logFile);
    rmSync(root, { recursive: true, force: true });
    throw new Error(`initdb failed (${initCode}):\n${log}`);
  }

  const settings: Record<string, string> = {
    listen_addresses: "127.0.0.1",
    unix_socket_directories: root,
    max_connections: "300",
    ...(options.durable ? {} : { fsync: "off", synchronous_commit: "off", full_page_writes: "off" }),
    ...options.settings,
  };

  // The port is picked before postgres binds it; on a lost race try another.
  let proc: ManagedProcess | undefined;
  let port = 0;
  for (let attempt = 0; attempt < 5 && !proc; attempt++) {
    port = await freePort();
    const args = ["-D", dataDir, "-p", String(port)];
    for (const [k, v] of Object.entries(settings)) args.push("-c", `${k}=${v}`);
    const candidate = startProcess(join(binDir, "postgres"), args, { logFile, ...(user ? { user } : {}) });
    try {
      await waitFor(
        `PostgreSQL on 127.0.0.1:${port}`,
        async () => {
          if (candidate.child.exitCode !== null) throw new Error("postgres exited");
          const client = new pg.Client({ host: "127.0.0.1", port, user: SUPERUSER, password, database: "postgres" });
          await client.connect();
          await client.end();
          return true;
        },
        { timeoutMs: 30_000, intervalMs: 50 },
      );
      proc = candidate;
    } catch (err) {
      await candidate.stop("SIGQUIT", 2_000);
      if (!tail(logFile).includes("could not bind")) {
        const log = tail(logFile);
        rmSync(root, { recursive: true, force: true });
        throw new Error(`PostgreSQL did not start: ${(err as Error).message}\n${log}`);
      }
    }
  }
  if (!proc) {
    rmSync(root, { recursive: true, force: true });
    throw new Error("PostgreSQL could not bind a free port after 5 attempts");
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
    url,
    async createDatabase(prefix = "test") {
      const name = uniqueDatabaseName(prefix);
      await createDatabase(url(), name);
      return name;
    },
    async stop() {
      // SIGINT is PostgreSQL's "fast" shutdown: it disconnects clients instead of waiting.
      await running.stop("SIGINT", 10_000);
      rmSync(root, { recursive: true, force: true });
    },
  };
}
