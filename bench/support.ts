// Shared pieces of the benchmarks: loading the built modules, the cached benchmark
// repository, a Gitaly process, statistics, result files.
//
// The scripts run under Node's type stripping, which cannot resolve the sources'
// `.js` imports of `.ts` files. So code from src/ is loaded from the build (dist/),
// typed by `typeof import()` of the source; other bench files are loaded by their
// `.ts` name the same way.
import { type ChildProcess, execFileSync, spawn } from "node:child_process";
import { randomBytes } from "node:crypto";
import { existsSync, mkdirSync, readFileSync, renameSync, rmSync, writeFileSync } from "node:fs";
import { createServer } from "node:net";
import { cpus, homedir, totalmem } from "node:os";
import { join, resolve } from "node:path";
import { pathToFileURL } from "node:url";

export const repoRoot = resolve(import.meta.dirname, "..");
export const resultsDir = join(repoRoot, "bench/results");
export const cacheRoot = join(process.env.XDG_CACHE_HOME ?? join(homedir(), ".cache"), "gitaly-operator");

/** Imports a built module: `dist("shared/grpc/service.js")`. */
export async function dist<T>(path: string): Promise<T> {
  const file = join(repoRoot, "dist", path);
  if (!existsSync(file)) {
    throw new Error(`${file} is missing: build first (npx tsc -p tsconfig.build.json)`);
  }
  return (await import(pathToFileURL(file).href)) as T;
}

/** Imports a TypeScript file of this repository by path (Node strips its types). */
export async function source<T>(path: string): Promise<T> {
  return (await import(pathToFileURL(join(repoRoot, path)).href)) as T;
}

type Fixtures = typeof import("../test/harness/git-fixtures.js");

export function freePort(): Promise<number> {
  return new Promise((done, fail) => {
    const srv = createServer();
    srv.once("error", fail);
    srv.listen(0, "127.0.0.1", () => {
      const a = srv.address();
      srv.close(() => done(typeof a === "object" && a ? a.port : 0));
    });
  });
}

export function isolatedGitEnv(): NodeJS.ProcessEnv {
  return {
    PATH: process.env.PATH,
    LANG: "C",
    LC_ALL: "C",
    GIT_CONFIG_NOSYSTEM: "1",
    GIT_CONFIG_GLOBAL: "/dev/null",
    HOME: "/nonexistent",
  };
}

export function git(repo: string, args: string[]): string {
  return execFileSync("git", ["--git-dir", repo, ...args], {
    env: isolatedGitEnv(),
    encoding: "utf8",
    maxBuffer: 64 * 1024 * 1024,
  });
}

export interface BenchRepoParams {
  /** Commits on main; each adds one incompressible blob and edits a small text file. */
  commits: number;
  /** Size of each incompressible blob, in KiB. */
  blobKiB: number;
}

export interface BenchRepo {
  path: string;
  params: BenchRepoParams;
  /** Bytes of the repository's packfiles. */
  packBytes: number;
  cached: boolean;
}

/** The small text files every commit edits one of (read benchmarks use them). */
export const NOTE_FILES = 20;
export const notePath = (i: number) => `docs/note-${String(i % NOTE_FILES).padStart(2, "0")}.txt`;

function noteContent(commit: number): string {
  const lines = [`# note ${commit % NOTE_FILES}, revision ${commit}`];
  for (let i = 0; i < 80; i++) lines.push(`line ${i} of commit ${commit}: the quick brown fox jumps over the lazy dog`);
  return `${lines.join("\n")}\n`;
}

/** Feeds `git fast-import` with back-pressure instead of building one huge buffer. */
async function fastImport(repo: string, commits: number, blobBytes: number, fixtures: Fixtures): Promise<void> {
  const child = spawn("git", ["--git-dir", repo, "fast-import", "--quiet"], {
    env: isolatedGitEnv(),
    stdio: ["pipe", "ignore", "pipe"],
  });
  let stderr = "";
  child.stderr?.on("data", (d: Buffer) => {
    stderr += d.toString();
  });
  const exited = new Promise<number | null>((done) => child.once("exit", (code) => done(code)));
  const stdin = child.stdin;
  if (!stdin) throw new Error("fast-import: no stdin");
  const write = (data: string | Buffer) =>
    new Promise<void>((done, fail) => {
      stdin.write(data, (err) => (err ? fail(err) : done()));
    });
  const data = async (content: string | Buffer) => {
    const buf = typeof content === "string" ? Buffer.from(content) : content;
    await write(`data ${buf.length}\n`);
    await write(buf);
    await write("\n");
  };
  const epoch = fixtures.FIXTURE_EPOCH;
  const who = `${fixtures.FIXTURE_AUTHOR.name} <${fixtures.FIXTURE_AUTHOR.email}>`;
  for (let i = 1; i <= commits; i++) {
    const when = `${epoch + 60 * i} +0000`;
    await write(`commit refs/heads/main\nmark :${i}\nauthor ${who} ${when}\ncommitter ${who} ${when}\n`);
    await data(`Commit ${i}: add data/blob-${String(i).padStart(4, "0")}.bin\n`);
    if (i > 1) await write(`from :${i - 1}\n`);
    // A distinct seed per blob: identical blobs would be stored once.
    await write(`M 100644 inline data/blob-${String(i).padStart(4, "0")}.bin\n`);
    await data(fixtures.pseudoRandomBytes(blobBytes, (0x9e3779b9 * i) >>> 0 || 1));
    await write(`M 100644 inline ${notePath(i)}\n`);
    await data(noteContent(i));
    await write("\n");
    if (i % 10 === 0) await write(`reset refs/tags/v${i / 10}.0\nfrom :${i}\n\n`);
  }
  await write("done\n");
  stdin.end();
  const code = await exited;
  if (code !== 0) throw new Error(`git fast-import failed (${code}): ${stderr}`);
}

function packBytes(repo: string): number {
  const out = git(repo, ["count-objects", "-v"]);
  const kib = /size-pack: (\d+)/.exec(out)?.[1];
  return Number(kib ?? 0) * 1024;
}

/**
 * The benchmark repository for `params`, generated once (deterministically: same
 * object ids everywhere) and cached under ~/.cache/gitaly-operator/bench-repos.
 * Repacked with a reachability bitmap, as Gitaly's housekeeping would leave it.
 */
export async function benchRepo(params: BenchRepoParams, log: (msg: string) => void): Promise<BenchRepo> {
  const key = `v1-c${params.commits}-b${params.blobKiB}k`;
  const dir = join(cacheRoot, "bench-repos", key);
  const path = join(dir, "repo.git");
  if (existsSync(join(dir, "complete"))) return { path, params, packBytes: packBytes(path), cached: true };

  log(`generating benchmark repository ${key} (once; cached in ${dir})`);
  const fixtures = await source<Fixtures>("test/harness/git-fixtures.ts");
  const tmp = `${dir}.tmp-${process.pid}`;
  rmSync(tmp, { recursive: true, force: true });
  const tmpRepo = join(tmp, "repo.git");
  mkdirSync(tmp, { recursive: true });
  execFileSync("git", ["init", "--quiet", "--bare", "--initial-branch=main", tmpRepo], { env: isolatedGitEnv() });
  await fastImport(tmpRepo, params.commits, params.blobKiB * 1024, fixtures);
  git(tmpRepo, ["repack", "-a", "-d", "-b", "-q"]);
  git(tmpRepo, ["pack-refs", "--all"]);
  writeFileSync(join(tmp, "complete"), `${JSON.stringify(params)}\n`);
  rmSync(dir, { recursive: true, force: true });
  mkdirSync(join(cacheRoot, "bench-repos"), { recursive: true });
  renameSync(tmp, dir);
  return { path, params, packBytes: packBytes(path), cached: false };
}

/**
 * A copy of the cached repository in a fresh storage directory: hard links where
 * the file system allows (pack files are never modified in place), a copy otherwise.
 */
export function stageRepository(repo: string, storageDir: string, relativePath: string): string {
  const dest = join(storageDir, relativePath);
  mkdirSync(join(dest, ".."), { recursive: true });
  try {
    execFileSync("cp", ["-al", repo, dest]);
  } catch {
    rmSync(dest, { recursive: true, force: true });
    execFileSync("cp", ["-a", repo, dest]);
  }
  return dest;
}

/** A scratch directory next to the cache, so hard links to cached repositories work. */
export function scratchDir(name: string): string {
  const dir = join(cacheRoot, "bench-tmp", `${name}-${process.pid}-${randomBytes(4).toString("hex")}`);
  mkdirSync(dir, { recursive: true });
  return dir;
}

/** user+system CPU seconds a process used so far (itself, not its children), from /proc. */
export function processCpuSeconds(pid: number | undefined): number {
  if (pid === undefined) return Number.NaN;
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
    const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
    // Fields 14 and 15 (utime, stime) are at 11 and 12 after the command name.
    const ticks = Number(fields[11]) + Number(fields[12]);
    return ticks / 100;
  } catch {
    return Number.NaN;
  }
}

export interface GitalyHandle {
  address: string;
  token: string;
  pid: number | undefined;
  logFile: string;
  stop(): Promise<void>;
}

/** Starts `dist/gitaly/main.js serve` with auth on and one storage; resolves once it is SERVING. */
export async function startGitaly(dir: string, storages: Record<string, string>): Promise<GitalyHandle> {
  const port = await freePort();
  const token = randomBytes(16).toString("hex");
  const tokenFile = join(dir, "gitaly-token");
  writeFileSync(tokenFile, token, { mode: 0o600 });
  const lines = [
    `listen_addr = "127.0.0.1:${port}"`,
    `runtime_dir = ${JSON.stringify(join(dir, "run"))}`,
    "",
    "[auth]",
    `token_file = ${JSON.stringify(tokenFile)}`,
    "",
    "[logging]",
    `format = "json"`,
    `level = "warn"`,
  ];
  for (const [name, path] of Object.entries(storages)) {
    lines.push("", "[[storage]]", `name = ${JSON.stringify(name)}`, `path = ${JSON.stringify(path)}`);
  }
  const configPath = join(dir, "gitaly.toml");
  writeFileSync(configPath, `${lines.join("\n")}\n`);
  const logFile = join(dir, "gitaly.log");
  const child = spawnLogged(process.execPath, [join(repoRoot, "dist/gitaly/main.js"), "serve", configPath], logFile);
  const address = `127.0.0.1:${port}`;
  const stop = () => stopChild(child);
  try {
    await waitForTcp(address, child, logFile);
  } catch (err) {
    await stop();
    throw err;
  }
  return { address, token, pid: child.pid, logFile, stop };
}

export interface GatewayHandle {
  url: string;
  pid: number | undefined;
  stop(): Promise<void>;
}

export interface GatewayProcessOptions {
  /** The storage (or Praefect virtual storage) of every repository; default "default". */
  storage?: string;
  /** Creates a repository on its first push (`--create-on-push`). */
  createOnPush?: boolean;
  /** Distinguishes the token and log files of several gateways in one directory. */
  name?: string;
}

/** Starts `dist/local/main.js gateway` in front of `upstream`; resolves once it answers. */
export async function startGatewayProcess(
  dir: string,
  upstream: string,
  token: string,
  options: GatewayProcessOptions = {},
): Promise<GatewayHandle> {
  const port = await freePort();
  const name = options.name ?? "gateway";
  const tokenFile = join(dir, `${name}-token`);
  writeFileSync(tokenFile, token, { mode: 0o600 });
  const logFile = join(dir, `${name}.log`);
  const child = spawnLogged(
    process.execPath,
    [
      join(repoRoot, "dist/local/main.js"),
      "gateway",
      "--listen",
      `127.0.0.1:${port}`,
      "--upstream",
      upstream,
      "--token-file",
      tokenFile,
      "--log-level",
      "warn",
      ...(options.storage ? ["--storage", options.storage] : []),
      ...(options.createOnPush ? ["--create-on-push"] : []),
    ],
    logFile,
  );
  const url = `http://127.0.0.1:${port}`;
  const stop = () => stopChild(child);
  const deadline = Date.now() + 15_000;
  for (;;) {
    if (child.exitCode !== null) {
      throw new Error(`gateway exited with ${child.exitCode}: ${readFileSync(logFile, "utf8").slice(-2000)}`);
    }
    try {
      if ((await fetch(`${url}/-/health`)).ok) break;
    } catch {
      // Not listening yet.
    }
    if (Date.now() > deadline) {
      await stop();
      throw new Error("gateway did not start within 15 s");
    }
    await new Promise((r) => setTimeout(r, 25));
  }
  return { url, pid: child.pid, stop };
}

export function spawnLogged(command: string, args: string[], logFile: string): ChildProcess {
  writeFileSync(logFile, "");
  const child = spawn(command, args, { stdio: ["ignore", "pipe", "pipe"] });
  const append = (d: Buffer) => writeFileSync(logFile, d, { flag: "a" });
  child.stdout?.on("data", append);
  child.stderr?.on("data", append);
  // Never outlive the benchmark.
  process.once("exit", () => child.kill("SIGKILL"));
  return child;
}

export function stopChild(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return Promise.resolve();
  return new Promise((done) => {
    const timer = setTimeout(() => child.kill("SIGKILL"), 10_000);
    child.once("exit", () => {
      clearTimeout(timer);
      done();
    });
    child.kill("SIGTERM");
  });
}

async function waitForTcp(address: string, child: ChildProcess, logFile: string): Promise<void> {
  const { connect } = await import("node:net");
  const [host, port] = address.split(":");
  const deadline = Date.now() + 20_000;
  for (;;) {
    if (child.exitCode !== null) {
      throw new Error(`gitaly exited with ${child.exitCode}: ${readFileSync(logFile, "utf8").slice(-2000)}`);
    }
    const ok = await new Promise<boolean>((done) => {
      const s = connect({ host, port: Number(port) });
      s.once("connect", () => {
        s.destroy();
        done(true);
      });
      s.once("error", () => done(false));
    });
    if (ok) return;
    if (Date.now() > deadline) throw new Error(`gitaly did not listen on ${address} within 20 s`);
    await new Promise((r) => setTimeout(r, 25));
  }
}

export interface Distribution {
  n: number;
  min: number;
  p50: number;
  p90: number;
  p99: number;
  max: number;
  mean: number;
}

/** Nearest-rank percentiles. */
export function distribution(samples: number[]): Distribution {
  const sorted = [...samples].sort((a, b) => a - b);
  const rank = (q: number) =>
    sorted[Math.min(sorted.length - 1, Math.max(0, Math.ceil(q * sorted.length) - 1))] ?? Number.NaN;
  const mean = sorted.reduce((a, b) => a + b, 0) / (sorted.length || 1);
  return {
    n: sorted.length,
    min: sorted[0] ?? Number.NaN,
    p50: rank(0.5),
    p90: rank(0.9),
    p99: rank(0.99),
    max: sorted[sorted.length - 1] ?? Number.NaN,
    mean,
  };
}

export function median(samples: number[]): number {
  const sorted = [...samples].sort((a, b) => a - b);
  const mid = Math.floor(sorted.length / 2);
  if (sorted.length === 0) return Number.NaN;
  return sorted.length % 2 === 1
    ? (sorted[mid] as number)
    : ((sorted[mid - 1] as number) + (sorted[mid] as number)) / 2;
}

export function round(n: number, digits = 2): number {
  const f = 10 ** digits;
  return Math.round(n * f) / f;
}

export function machine(): Record<string, unknown> {
  let gitVersion = "unknown";
  try {
    gitVersion = execFileSync("git", ["--version"], { encoding: "utf8" }).trim();
  } catch {
    // Reported as unknown.
  }
  return {
    node: process.version,
    git: gitVersion,
    cpu: cpus()[0]?.model ?? "unknown",
    cpuCount: cpus().length,
    memoryGiB: round(totalmem() / 2 ** 30, 1),
  };
}

export function writeResult(name: string, result: unknown): string {
  mkdirSync(resultsDir, { recursive: true });
  const file = join(resultsDir, `${name}.json`);
  writeFileSync(file, `${JSON.stringify(result, null, 2)}\n`);
  return file;
}
