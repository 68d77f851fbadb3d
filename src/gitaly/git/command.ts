// The one way the server runs git. Every invocation goes through GitCommandFactory,
// which enforces the same rules as upstream's gitcmd package:
//
// - only allow-listed subcommands (subcommands.ts) run;
// - flags must look like flags, positional arguments can never become options
//   (`--end-of-options`, or a refusal of a leading '-' where git lacks it);
// - git never sees the server's environment: no GIT_DIR, no user or system config,
//   no prompts; configuration is passed through GIT_CONFIG_COUNT/KEY_n/VALUE_n so it
//   does not show up in `ps`;
// - each git runs in its own process group, so cancelling an RPC stops its helpers
//   (e.g. upload-pack's pack-objects) too.
import { type ChildProcess, execFile, execFileSync, spawn as spawnChild } from "node:child_process";
import { join } from "node:path";
import type { Readable, Writable } from "node:stream";
import { Code, RpcError } from "../../shared/grpc/errors.js";
import { type ConfigPair, SUBCOMMANDS } from "./subcommands.js";

export type { ConfigPair } from "./subcommands.js";

/** A flag: "-z", "--all", "--format=%(refname)"; or a flag and its value as two arguments. */
export type GitFlag = string | { name: string; value: string };

/** Quarantine and alternate object directories of a `Repository` message, relative to the repository. */
export interface ObjectDirectories {
  objectDirectory?: string;
  alternateObjectDirectories?: string[];
}

export interface GitCommandOptions {
  /** Passed as `--git-dir <repoPath>`; also the default working directory. */
  repoPath?: string;
  subcommand: string;
  /** Sub-subcommand, e.g. "write" in `git commit-graph write`. */
  action?: string;
  flags?: GitFlag[];
  /** Positional arguments, after `--end-of-options` where the subcommand supports it. */
  args?: string[];
  /** Arguments after `--` (paths); never validated, git cannot take them for options. */
  postSeparatorArgs?: string[];
  /** Options before the subcommand; only the pathspec switches are allowed. */
  globalFlags?: string[];
  /**
   * Data for git's standard input. "pipe" leaves `GitProcess.stdin` open for the caller;
   * absent means /dev/null.
   */
  stdin?: Buffer | string | Readable | "pipe";
  /** Extra environment, e.g. GIT_PROTOCOL; may not override the hardened variables. */
  env?: Record<string, string>;
  /** Per-call configuration; the admin's [[git.config]] still takes precedence. */
  config?: ConfigPair[];
  /** Stops git (and its process group) when aborted, e.g. on RPC cancellation. */
  signal?: AbortSignal;
  cwd?: string;
  objectDirectories?: ObjectDirectories;
}

export interface GitProcess {
  readonly pid: number | undefined;
  /** Arguments after the git binary, for logs and tests. */
  readonly argv: readonly string[];
  /** Open only with `stdin: "pipe"`. */
  readonly stdin: Writable | null;
  /** Must be consumed (or resumed) for `wait()` to settle. */
  readonly stdout: Readable;
  /** Also captured: the last 64 KiB are in `stderrText()` and in GitCommandError. */
  readonly stderr: Readable;
  /** Resolves when git exited 0 and its output closed; rejects with GitCommandError otherwise. */
  wait(): Promise<void>;
  /** SIGTERM to git's process group (lets git remove lock files), SIGKILL after a grace period. */
  kill(): void;
  stderrText(): string;
}

export class GitCommandError extends Error {
  readonly subcommand: string;
  readonly argv: readonly string[];
  readonly repoPath: string | undefined;
  readonly exitCode: number | null;
  readonly signal: NodeJS.Signals | null;
  readonly stderr: string;
  /** Killed because the caller's AbortSignal fired. */
  readonly aborted: boolean;

  constructor(init: {
    subcommand: string;
    argv: readonly string[];
    repoPath?: string;
    exitCode: number | null;
    signal: NodeJS.Signals | null;
    stderr: string;
    aborted: boolean;
    cause?: unknown;
  }) {
    const where = init.repoPath ? ` in ${init.repoPath}` : "";
    const how = init.aborted
      ? "was cancelled"
      : init.exitCode !== null
        ? `failed: exit status ${init.exitCode}`
        : init.signal
          ? `failed: killed by ${init.signal}`
          : `failed: ${init.cause instanceof Error ? init.cause.message : "could not run"}`;
    const detail = init.stderr.trim() ? `: ${init.stderr.trim()}` : "";
    super(`git ${init.subcommand}${where} ${how}${detail}`, { cause: init.cause });
    this.name = "GitCommandError";
    this.subcommand = init.subcommand;
    this.argv = init.argv;
    this.repoPath = init.repoPath;
    this.exitCode = init.exitCode;
    this.signal = init.signal;
    this.stderr = init.stderr;
    this.aborted = init.aborted;
  }
}

export interface GitCommandFactoryOptions {
  /** Default "git" (looked up in PATH). */
  gitBinary?: string;
  /** The admin's `[[git.config]]` entries; applied last, so they win. */
  extraConfig?: ConfigPair[];
  /** Where PATH (and TZ, LD_LIBRARY_PATH, proxy settings) come from. Default process.env. */
  env?: NodeJS.ProcessEnv;
  /** HOME for git; nothing should be read from it. Default "/nonexistent". */
  home?: string;
  /** core.hooksPath; the default (/dev/null, not a directory) disables repository hooks. */
  hooksPath?: string;
  /** Between SIGTERM and SIGKILL on kill(). Default 5000 ms. */
  killGraceMs?: number;
}

const STDERR_LIMIT = 64 * 1024;
const FLAG = /^(?:-[A-Za-z0-9]+|--[A-Za-z0-9][A-Za-z0-9-]*(?:=[^\0]*)?)$/s;
const VALUE_FLAG_NAME = /^--?[A-Za-z0-9][A-Za-z0-9-]*$/;
const ACTION = /^[A-Za-z0-9]+[-A-Za-z0-9]*$/;
const ENV_NAME = /^[A-Za-z_][A-Za-z0-9_]*$/;
const GLOBAL_FLAGS = new Set([
  "--literal-pathspecs",
  "--glob-pathspecs",
  "--noglob-pathspecs",
  "--icase-pathspecs",
  "--no-replace-objects",
]);
/** Inherited from the server's environment when set; nothing else is. */
const PASSTHROUGH_ENV = [
  "PATH",
  "TZ",
  "LD_LIBRARY_PATH",
  "http_proxy",
  "HTTP_PROXY",
  "https_proxy",
  "HTTPS_PROXY",
  "all_proxy",
  "no_proxy",
  "NO_PROXY",
  // Trust for tls:// peers (gitaly-ssh during replication), as upstream passes them on.
  "SSL_CERT_FILE",
  "SSL_CERT_DIR",
];
const DEFAULT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

function invalidArg(message: string): RpcError {
  return new RpcError(Code.INVALID_ARGUMENT, `${message}: invalid argument`);
}

let localeCache: string | undefined;
/**
 * Upstream forces en_US.UTF-8 so git's messages are English and stable. Minimal images
 * often lack that locale; C.UTF-8 gives the same (untranslated) messages, so it is used
 * when `locale -a` does not list en_US.
 */
export function gitLocale(): string {
  if (localeCache === undefined) {
    let available = "";
    try {
      available = execFileSync("locale", ["-a"], { encoding: "utf8", stdio: ["ignore", "pipe", "ignore"] });
    } catch {
      // No locale(1): fall through to C.UTF-8, which glibc ≥ 2.35 always has built in.
    }
    localeCache = /^en_US\.utf-?8$/im.test(available) ? "en_US.UTF-8" : "C.UTF-8";
  }
  return localeCache;
}

/** "2.39.5" → [2, 39, 5]; tolerates suffixes such as ".gl1" or ".windows.1". */
export function parseGitVersion(version: string): [number, number, number] {
  const m = /^(\d+)\.(\d+)(?:\.(\d+))?/.exec(version.replace(/^git version /, ""));
  if (!m) throw new Error(`cannot parse git version ${JSON.stringify(version)}`);
  return [Number(m[1]), Number(m[2]), Number(m[3] ?? 0)];
}

export function gitVersionAtLeast(version: string, minimum: string): boolean {
  const a = parseGitVersion(version);
  const b = parseGitVersion(minimum);
  for (let i = 0; i < 3; i++) {
    if ((a[i] as number) !== (b[i] as number)) return (a[i] as number) > (b[i] as number);
  }
  return true;
}

function validateConfigPair(pair: ConfigPair): void {
  // section.name or section.<subsection>.name; NUL or a newline could not round-trip through git.
  if (!/^[A-Za-z0-9][A-Za-z0-9-]*\.(?:[^\0\n]*\.)?[A-Za-z][A-Za-z0-9-]*$/.test(pair.key)) {
    throw invalidArg(`config key ${JSON.stringify(pair.key)} is not valid`);
  }
  if (pair.value.includes("\0")) throw invalidArg(`config value for ${JSON.stringify(pair.key)} contains NUL`);
}

/** Environment variables that point git at `objectDirectories`, resolved against the repository. */
export function objectDirectoryEnv(repoPath: string, dirs: ObjectDirectories | undefined): Record<string, string> {
  const env: Record<string, string> = {};
  if (!dirs) return env;
  // Joined like upstream's filepath.Join: even an absolute value lands under the repository.
  const resolveIn = (dir: string) => join(repoPath, dir);
  if (dirs.objectDirectory) env.GIT_OBJECT_DIRECTORY = resolveIn(dirs.objectDirectory);
  const alternates = dirs.alternateObjectDirectories ?? [];
  if (alternates.length > 0) env.GIT_ALTERNATE_OBJECT_DIRECTORIES = alternates.map(resolveIn).join(":");
  return env;
}

// Git processes must not outlive the server, even when it exits without cleaning up.
const liveProcesses = new Set<ChildProcess>();
let exitHooked = false;
function trackProcess(child: ChildProcess): void {
  if (!exitHooked) {
    exitHooked = true;
    process.on("exit", () => {
      for (const c of liveProcesses) signalGroup(c, "SIGKILL");
    });
  }
  liveProcesses.add(child);
  child.once("close", () => liveProcesses.delete(child));
  child.once("error", () => liveProcesses.delete(child));
}

function signalGroup(child: ChildProcess, signal: NodeJS.Signals): void {
  if (child.pid === undefined || child.exitCode !== null || child.signalCode !== null) return;
  try {
    process.kill(-child.pid, signal);
  } catch {
    try {
      child.kill(signal);
    } catch {
      // Already gone.
    }
  }
}

export class GitCommandFactory {
  private readonly gitBinary: string;
  private readonly extraConfig: ConfigPair[];
  private readonly baseEnv: NodeJS.ProcessEnv;
  private readonly home: string;
  private readonly hooksPath: string;
  private readonly killGraceMs: number;
  private cachedVersion: string | undefined;
  private versionPromise: Promise<string> | undefined;

  constructor(options: GitCommandFactoryOptions = {}) {
    this.gitBinary = options.gitBinary ?? "git";
    this.extraConfig = [...(options.extraConfig ?? [])];
    for (const pair of this.extraConfig) validateConfigPair(pair);
    this.baseEnv = options.env ?? process.env;
    this.home = options.home ?? "/nonexistent";
    this.hooksPath = options.hooksPath ?? "/dev/null";
    this.killGraceMs = options.killGraceMs ?? 5000;
  }

  /** The git version ("2.39.5"), as reported by `git version`; cached. */
  version(): Promise<string> {
    if (this.cachedVersion !== undefined) return Promise.resolve(this.cachedVersion);
    this.versionPromise ??= new Promise<string>((resolve, reject) => {
      execFile(this.gitBinary, ["version"], { env: this.baseEnvironment(), encoding: "utf8" }, (err, stdout) => {
        if (err) {
          reject(new Error(`cannot run ${this.gitBinary} version: ${err.message}`, { cause: err }));
          return;
        }
        try {
          resolve(this.rememberVersion(stdout));
        } catch (e) {
          reject(e);
        }
      });
    }).finally(() => {
      this.versionPromise = undefined;
    });
    return this.versionPromise;
  }

  /** Same as version(), blocking; runs at most once so that spawn() can stay synchronous. */
  versionSync(): string {
    if (this.cachedVersion !== undefined) return this.cachedVersion;
    const out = execFileSync(this.gitBinary, ["version"], {
      env: this.baseEnvironment(),
      encoding: "utf8",
      stdio: ["ignore", "pipe", "pipe"],
    });
    return this.rememberVersion(out);
  }

  private rememberVersion(output: string): string {
    const v = output.trim().replace(/^git version /, "");
    parseGitVersion(v);
    this.cachedVersion = v;
    return v;
  }

  /** Configuration every git invocation gets, before subcommand, per-call and admin config. */
  globalConfig(): ConfigPair[] {
    const config: ConfigPair[] = [
      // Housekeeping is scheduled by Gitaly, never triggered by a write.
      { key: "gc.auto", value: "0" },
      { key: "maintenance.auto", value: "0" },
      { key: "core.autocrlf", value: "false" },
      // Replace refs would let a pushed ref swap the content other commands see.
      { key: "core.useReplaceRefs", value: "false" },
      { key: "core.bigFileThreshold", value: "50m" },
    ];
    if (gitVersionAtLeast(this.versionSync(), "2.44.0")) {
      config.push({ key: "pack.allowPackReuse", value: "multi" });
    }
    config.push(
      { key: "core.fsync", value: "objects,derived-metadata,reference" },
      { key: "core.fsyncMethod", value: "fsync" },
      // Busy repositories contend on packed-refs.lock; git's 1 s default is too short.
      { key: "core.packedRefsTimeout", value: "10000" },
      { key: "core.filesRefLockTimeout", value: "1000" },
      { key: "core.hooksPath", value: this.hooksPath },
    );
    return config;
  }

  /** The arguments after the git binary; throws InvalidArgument for anything not allowed. */
  argv(opts: GitCommandOptions): string[] {
    const description = SUBCOMMANDS.get(opts.subcommand);
    if (!description) throw invalidArg(`invalid sub command name ${JSON.stringify(opts.subcommand)}`);

    const argv: string[] = [];
    if (opts.repoPath !== undefined) {
      if (opts.repoPath === "") throw invalidArg("empty repository path");
      argv.push("--git-dir", opts.repoPath);
    }
    for (const flag of opts.globalFlags ?? []) {
      if (!GLOBAL_FLAGS.has(flag)) throw invalidArg(`global flag ${JSON.stringify(flag)} is not allowed`);
      argv.push(flag);
    }
    argv.push(opts.subcommand);
    if (opts.action !== undefined) {
      if (!ACTION.test(opts.action)) throw invalidArg(`invalid action ${JSON.stringify(opts.action)}`);
      argv.push(opts.action);
    }
    for (const flag of opts.flags ?? []) {
      if (typeof flag === "string") {
        if (!FLAG.test(flag)) throw invalidArg(`flag ${JSON.stringify(flag)} failed regex validation`);
        argv.push(flag);
      } else {
        if (!VALUE_FLAG_NAME.test(flag.name)) {
          throw invalidArg(`value flag ${JSON.stringify(flag.name)} failed regex validation`);
        }
        argv.push(flag.name, flag.value);
      }
    }

    const args = opts.args ?? [];
    if (description.validateArgs) {
      const reason = description.validateArgs(args);
      if (reason !== null) throw new RpcError(Code.INVALID_ARGUMENT, reason);
    } else if (!description.endOfOptions) {
      for (const arg of args) {
        if (arg.startsWith("-")) throw invalidArg(`positional arg ${JSON.stringify(arg)} cannot start with dash '-'`);
      }
    }
    if (description.endOfOptions) argv.push("--end-of-options");
    argv.push(...args);

    const post = opts.postSeparatorArgs ?? [];
    if (post.length > 0) argv.push("--", ...post);

    for (const a of argv) {
      if (a.includes("\0")) throw invalidArg(`argument ${JSON.stringify(a)} contains NUL`);
    }
    return argv;
  }

  /** The complete environment git runs with. */
  environment(opts: GitCommandOptions): Record<string, string> {
    const env = this.baseEnvironment();
    const hardened = new Set(Object.keys(env));

    for (const [key, value] of Object.entries(opts.env ?? {})) {
      if (
        !ENV_NAME.test(key) ||
        hardened.has(key) ||
        key.startsWith("GIT_CONFIG") ||
        key.startsWith("LC_") ||
        key === "GIT_DIR" ||
        key === "GIT_EXEC_PATH"
      ) {
        throw invalidArg(`environment variable ${JSON.stringify(key)} may not be set`);
      }
      if (value.includes("\0")) throw invalidArg(`environment variable ${key} contains NUL`);
      env[key] = value;
    }
    if (opts.repoPath) Object.assign(env, objectDirectoryEnv(opts.repoPath, opts.objectDirectories));

    const description = SUBCOMMANDS.get(opts.subcommand);
    const perCall = opts.config ?? [];
    for (const pair of perCall) validateConfigPair(pair);
    const config = [...this.globalConfig(), ...(description?.config?.() ?? []), ...perCall, ...this.extraConfig];
    config.forEach((pair, i) => {
      env[`GIT_CONFIG_KEY_${i}`] = pair.key;
      env[`GIT_CONFIG_VALUE_${i}`] = pair.value;
    });
    env.GIT_CONFIG_COUNT = String(config.length);
    return env;
  }

  /** Starts git; the caller consumes stdout and awaits wait(). */
  spawn(opts: GitCommandOptions): GitProcess {
    const argv = this.argv(opts);
    const env = this.environment(opts);
    if (opts.signal?.aborted) {
      throw new GitCommandError({
        subcommand: opts.subcommand,
        argv,
        repoPath: opts.repoPath,
        exitCode: null,
        signal: null,
        stderr: "",
        aborted: true,
      });
    }
    const stdinMode = opts.stdin === undefined ? "ignore" : "pipe";
    const child = spawnChild(this.gitBinary, argv, {
      env,
      cwd: opts.cwd ?? opts.repoPath ?? "/",
      stdio: [stdinMode, "pipe", "pipe"],
      // Own process group: kill() reaches git's helper processes too.
      detached: true,
    });
    trackProcess(child);
    return new SpawnedGit(child, argv, opts, this.killGraceMs);
  }

  /** Runs git to completion and collects its output. */
  async run(opts: GitCommandOptions): Promise<{ stdout: Buffer; stderr: string }> {
    const proc = this.spawn(opts);
    const chunks: Buffer[] = [];
    proc.stdout.on("data", (chunk: Buffer) => chunks.push(chunk));
    await proc.wait();
    return { stdout: Buffer.concat(chunks), stderr: proc.stderrText() };
  }

  private baseEnvironment(): Record<string, string> {
    const env: Record<string, string> = {};
    for (const key of PASSTHROUGH_ENV) {
      const value = this.baseEnv[key];
      if (value !== undefined && value !== "") env[key] = value;
    }
    env.PATH ??= DEFAULT_PATH;
    Object.assign(env, {
      LANG: gitLocale(),
      HOME: this.home,
      GIT_TERMINAL_PROMPT: "0",
      GIT_CONFIG_GLOBAL: "/dev/null",
      GIT_CONFIG_SYSTEM: "/dev/null",
      XDG_CONFIG_HOME: "/dev/null",
    });
    return env;
  }
}

class SpawnedGit implements GitProcess {
  readonly argv: readonly string[];
  readonly stdin: Writable | null;
  readonly stdout: Readable;
  readonly stderr: Readable;
  private readonly stderrChunks: Buffer[] = [];
  private stderrBytes = 0;
  private aborted = false;
  private readonly done: Promise<void>;
  private killTimer: NodeJS.Timeout | undefined;

  constructor(
    private readonly child: ChildProcess,
    argv: string[],
    opts: GitCommandOptions,
    private readonly killGraceMs: number,
  ) {
    this.argv = argv;
    if (!child.stdout || !child.stderr) throw new Error("git spawned without stdout/stderr pipes");
    this.stdout = child.stdout;
    this.stderr = child.stderr;
    this.stderr.on("data", (chunk: Buffer) => this.captureStderr(chunk));

    const stdin = child.stdin;
    // git may exit before reading all its input; EPIPE then shows up as the exit status.
    stdin?.on("error", () => {});
    const input = opts.stdin;
    if (stdin && input !== undefined && input !== "pipe") {
      if (typeof input === "string" || Buffer.isBuffer(input)) {
        stdin.end(input);
      } else {
        input.on("error", () => this.kill());
        input.pipe(stdin);
      }
    }
    this.stdin = input === "pipe" ? stdin : null;

    const onAbort = () => {
      this.aborted = true;
      this.kill();
    };
    opts.signal?.addEventListener("abort", onAbort, { once: true });

    this.done = new Promise<void>((resolve, reject) => {
      let settled = false;
      const settle = (code: number | null, signal: NodeJS.Signals | null, cause?: unknown) => {
        if (settled) return;
        settled = true;
        opts.signal?.removeEventListener("abort", onAbort);
        if (this.killTimer) clearTimeout(this.killTimer);
        if (code === 0 && !this.aborted && cause === undefined) {
          resolve();
          return;
        }
        reject(
          new GitCommandError({
            subcommand: opts.subcommand,
            argv,
            repoPath: opts.repoPath,
            exitCode: code,
            signal,
            stderr: this.stderrText(),
            aborted: this.aborted,
            cause,
          }),
        );
      };
      child.once("error", (err) => settle(null, null, err));
      child.once("close", (code, signal) => settle(code, signal));
    });
    // Callers that never wait must not crash the server with an unhandled rejection.
    this.done.catch(() => {});
  }

  get pid(): number | undefined {
    return this.child.pid;
  }

  wait(): Promise<void> {
    return this.done;
  }

  kill(): void {
    if (this.child.exitCode !== null || this.child.signalCode !== null) return;
    signalGroup(this.child, "SIGTERM");
    // Unread output would otherwise keep 'close' (and wait()) from ever firing.
    this.child.stdin?.destroy();
    this.stdout.destroy();
    if (!this.killTimer) {
      this.killTimer = setTimeout(() => signalGroup(this.child, "SIGKILL"), this.killGraceMs);
      this.killTimer.unref();
    }
  }

  stderrText(): string {
    return Buffer.concat(this.stderrChunks).toString("utf8");
  }

  private captureStderr(chunk: Buffer): void {
    this.stderrChunks.push(chunk);
    this.stderrBytes += chunk.length;
    // Keep the tail: git's fatal message comes last.
    while (this.stderrBytes > STDERR_LIMIT && this.stderrChunks.length > 1) {
      this.stderrBytes -= (this.stderrChunks.shift() as Buffer).length;
    }
  }
}
