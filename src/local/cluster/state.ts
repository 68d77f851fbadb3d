// The local cluster's state directory: everything a run keeps for the next one (repositories,
// PostgreSQL's data, tokens, the CA) and everything it writes while running (configs, logs).
// Secrets are files with mode 0600 that only their paths ever leave.
//
//   <state>/
//     .gitaly-cluster          marker: this directory belongs to us (and --reset may empty it)
//     runner.pid               lock: the pid of the runner using it
//     ports.json               internal ports of the last run, reused when still free
//     secrets/                 praefect-token, gitaly-token, postgres-password (0600)
//     tls/                     ca.crt, ca.key, gitaly.{crt,key}, praefect.{crt,key}
//     postgres/data            PostgreSQL's data directory (or a symlink to it, see postgresDataDir)
//     gitaly/<storage>/        config.toml, repositories/
//     praefect/praefect-<i>/   config.toml
//     logs/                    one file per process, plus the gateway's
import { createHash, randomBytes } from "node:crypto";
import {
  chmodSync,
  existsSync,
  lstatSync,
  mkdirSync,
  readdirSync,
  readFileSync,
  readlinkSync,
  renameSync,
  rmSync,
  statSync,
  symlinkSync,
  writeFileSync,
} from "node:fs";
import { dirname, join, resolve } from "node:path";
import type { UnixUser } from "../../shared/process.js";

export const STATE_MARKER = ".gitaly-cluster";

export interface StateLayout {
  root: string;
  marker: string;
  lockFile: string;
  portsFile: string;
  secretsDir: string;
  /** The token clients (GitLab, the gateway) present to Praefect. */
  praefectTokenFile: string;
  /** The token Praefect presents to the Gitaly nodes. */
  gitalyTokenFile: string;
  postgresPasswordFile: string;
  tlsDir: string;
  logsDir: string;
  postgresDir: string;
  /** `postgres/data`: the data directory, or a symlink to it when the server user cannot reach the state dir. */
  postgresDataPath: string;
  gitalyDir: string;
  praefectDir: string;
  /** Scratch space of the runner (the demo repository's first commit). */
  workDir: string;
}

export function stateLayout(stateDir: string): StateLayout {
  const root = resolve(stateDir);
  const secretsDir = join(root, "secrets");
  const postgresDir = join(root, "postgres");
  return {
    root,
    marker: join(root, STATE_MARKER),
    lockFile: join(root, "runner.pid"),
    portsFile: join(root, "ports.json"),
    secretsDir,
    praefectTokenFile: join(secretsDir, "praefect-token"),
    gitalyTokenFile: join(secretsDir, "gitaly-token"),
    postgresPasswordFile: join(secretsDir, "postgres-password"),
    tlsDir: join(root, "tls"),
    logsDir: join(root, "logs"),
    postgresDir,
    postgresDataPath: join(postgresDir, "data"),
    gitalyDir: join(root, "gitaly"),
    praefectDir: join(root, "praefect"),
    workDir: join(root, "tmp"),
  };
}

/**
 * Makes sure `layout.root` is ours to use: missing, empty, or carrying our marker. A
 * non-empty directory without the marker is refused, so a mistyped --state-dir (say, $HOME)
 * is never filled, let alone emptied by --reset.
 */
export function claimStateDir(layout: StateLayout): void {
  if (existsSync(layout.root)) {
    if (!statSync(layout.root).isDirectory()) throw new Error(`state directory ${layout.root} is not a directory`);
    if (!existsSync(layout.marker) && readdirSync(layout.root).length > 0) {
      throw new Error(
        `state directory ${layout.root} is not empty and was not created by gitaly-cluster; choose another --state-dir`,
      );
    }
  }
  // Only the state dir itself is private; parents we create get the usual mode, so that
  // PostgreSQL's user can still pass through them when we run as root.
  mkdirSync(dirname(layout.root), { recursive: true });
  mkdirSync(layout.root, { recursive: true, mode: 0o700 });
  writeFileSync(layout.marker, "state directory of a local Gitaly Cluster (gitaly-cluster up)\n");
}

function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === "EPERM";
  }
}

/** Takes the state dir's lock (runner.pid); throws when a live runner holds it. */
export function lockStateDir(layout: StateLayout, pid: number = process.pid): { release(): void } {
  for (let attempt = 0; attempt < 2; attempt++) {
    try {
      writeFileSync(layout.lockFile, `${pid}\n`, { flag: "wx" });
      return {
        release() {
          // Only our own lock: a runner started after a forced stop may hold it by now.
          if (readPid(layout.lockFile) === pid) rmSync(layout.lockFile, { force: true });
        },
      };
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== "EEXIST") throw err;
      const holder = readPid(layout.lockFile);
      if (holder !== undefined && holder !== pid && isAlive(holder)) {
        throw new Error(`a local cluster is already running on ${layout.root} (pid ${holder}); stop it first`);
      }
      // Left behind by a runner that was killed: take it over.
      rmSync(layout.lockFile, { force: true });
    }
  }
  throw new Error(`could not take the lock ${layout.lockFile}`);
}

function readPid(file: string): number | undefined {
  try {
    const pid = Number.parseInt(readFileSync(file, "utf8").trim(), 10);
    return Number.isInteger(pid) && pid > 0 ? pid : undefined;
  } catch {
    return undefined;
  }
}

/**
 * --reset: deletes everything the state dir holds except the marker and the lock (and the
 * PostgreSQL data kept elsewhere for it). Only called with the lock held.
 */
export function resetStateDir(layout: StateLayout): void {
  const external = externalPostgresData(layout);
  if (external) rmSync(external, { recursive: true, force: true });
  for (const entry of readdirSync(layout.root)) {
    const path = join(layout.root, entry);
    if (path === layout.marker || path === layout.lockFile) continue;
    rmSync(path, { recursive: true, force: true });
  }
}

/** Creates the sub-directories; secrets/ is private. */
export function createStateDirs(layout: StateLayout): void {
  for (const dir of [layout.tlsDir, layout.logsDir, layout.postgresDir, layout.gitalyDir, layout.praefectDir]) {
    mkdirSync(dir, { recursive: true });
  }
  mkdirSync(layout.secretsDir, { recursive: true, mode: 0o700 });
  chmodSync(layout.secretsDir, 0o700);
  rmSync(layout.workDir, { recursive: true, force: true });
  mkdirSync(layout.workDir, { recursive: true, mode: 0o700 });
}

/** 32 random bytes, URL-safe: what the operator generates for its token Secrets too. */
export function randomSecret(): string {
  return randomBytes(32).toString("base64url");
}

/** Writes `text` to `file` with mode 0600 atomically (a reader never sees half a secret). */
export function writePrivateFile(file: string, text: string): void {
  const tmp = `${file}.tmp-${process.pid}`;
  writeFileSync(tmp, text, { mode: 0o600 });
  chmodSync(tmp, 0o600);
  renameSync(tmp, file);
}

/**
 * The secret in `file`, generated on first use and kept for every later run. Gitaly and
 * Praefect refuse token files other processes could read, so the mode is put back to 0600.
 */
export function ensureSecret(file: string, generate: () => string = randomSecret): string {
  if (existsSync(file)) {
    const value = readFileSync(file, "utf8").trim();
    if (value !== "") {
      if ((statSync(file).mode & 0o077) !== 0) chmodSync(file, 0o600);
      return value;
    }
  }
  const value = generate();
  writePrivateFile(file, `${value}\n`);
  return value;
}

/** Whether `user` may enter every directory from / down to `dir` (owner, group and other bits). */
export function canTraverse(user: UnixUser, dir: string): boolean {
  let path = resolve(dir);
  for (;;) {
    let st: ReturnType<typeof statSync>;
    try {
      st = statSync(path);
    } catch {
      return false;
    }
    const bit = st.uid === user.uid ? 0o100 : st.gid === user.gid ? 0o010 : 0o001;
    if ((st.mode & bit) === 0) return false;
    const parent = dirname(path);
    if (parent === path) return true;
    path = parent;
  }
}

/** Where PostgreSQL's data goes for a state dir the server user cannot reach (we run as root). */
export function externalPostgresDataDir(layout: StateLayout, base = "/var/lib/gitaly-cluster"): string {
  const id = createHash("sha256").update(layout.root).digest("hex").slice(0, 12);
  return join(base, `postgres-${id}`, "data");
}

function externalPostgresData(layout: StateLayout): string | undefined {
  try {
    if (!lstatSync(layout.postgresDataPath).isSymbolicLink()) return undefined;
    return resolve(dirname(layout.postgresDataPath), readlinkSync(layout.postgresDataPath));
  } catch {
    return undefined;
  }
}

/**
 * PostgreSQL's data directory. As root, PostgreSQL runs as an unprivileged user that must be
 * able to reach it: the state dir is opened for traversal (0711; its secrets stay 0600 in a
 * 0700 dir), and when a parent is closed too (/root is 0700) the data goes to
 * externalPostgresDataDir(), with `postgres/data` a symlink to it.
 */
export function postgresDataDir(layout: StateLayout, serverUser: UnixUser | undefined): string {
  const external = externalPostgresData(layout);
  if (external) return external;
  if (serverUser === undefined) return layout.postgresDataPath;
  chmodSync(layout.root, 0o711);
  chmodSync(layout.postgresDir, 0o711);
  if (canTraverse(serverUser, layout.postgresDir)) return layout.postgresDataPath;
  const elsewhere = externalPostgresDataDir(layout);
  mkdirSync(dirname(elsewhere), { recursive: true, mode: 0o711 });
  chmodSync(dirname(elsewhere), 0o711);
  if (!canTraverse(serverUser, dirname(elsewhere))) {
    throw new Error(
      `PostgreSQL runs as ${serverUser.name}, which can reach neither ${layout.postgresDir} nor ${dirname(elsewhere)}`,
    );
  }
  if (existsSync(layout.postgresDataPath)) rmSync(layout.postgresDataPath, { recursive: true, force: true });
  symlinkSync(elsewhere, layout.postgresDataPath);
  return elsewhere;
}

/** Internal ports of the last run, by listener name ("gitaly-0.grpc"); {} when there are none. */
export function readRememberedPorts(layout: StateLayout): Record<string, number> {
  try {
    const parsed: unknown = JSON.parse(readFileSync(layout.portsFile, "utf8"));
    if (typeof parsed !== "object" || parsed === null) return {};
    return Object.fromEntries(
      Object.entries(parsed).filter((e): e is [string, number] => Number.isInteger(e[1]) && e[1] > 0 && e[1] < 65536),
    );
  } catch {
    return {};
  }
}

export function rememberPorts(layout: StateLayout, ports: Record<string, number>): void {
  writeFileSync(layout.portsFile, `${JSON.stringify(ports, null, 2)}\n`);
}
