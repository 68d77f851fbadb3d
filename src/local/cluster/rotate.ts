// `gitaly-cluster rotate`: rotates both auth tokens of a running local cluster through the
// shared state machine (src/controller/rotation), over the files the runner laid out: each
// server's config.toml ([auth] transitioning, reloaded live), the token files in secrets/, and
// each server's /metrics. The record (secrets/rotation.json) outlives this command, so a rotation
// stopped by Ctrl-C, a timeout or a restart of the cluster resumes on the next `rotate`, and
// `up` renders the configs the way the record's phase wants them.
//
// The driver, the file environment and the manifest loader are imported on use, so that the
// program's command table can show ROTATE_USAGE without loading them.
import { closeSync, existsSync, openSync, readdirSync, readFileSync, rmSync, writeSync } from "node:fs";
import { basename, dirname, join, resolve } from "node:path";
import { parseArgs } from "node:util";
import { parse as parseToml } from "smol-toml";
import { isDuration, parseDuration } from "../../controller/api/units.js";
import type { RotationRecord, RunRotationResult, TokenPair } from "../../controller/rotation/driver.js";
import type { RotationFiles, ServerFiles } from "../../controller/rotation/files.js";
import {
  deliveryFor,
  type RotationPhase,
  type RotationState,
  type StepResult,
} from "../../controller/rotation/machine.js";
import { type StateLayout, stateLayout } from "./state.js";

export const DEFAULT_QUIET_PERIOD = "60s";
export const DEFAULT_ROTATE_TIMEOUT = "10m";
/** Pause between two steps of the machine: the servers reload within milliseconds of a file change. */
const STEP_INTERVAL_MS = 1_000;

export const ROTATE_USAGE = `usage: gitaly-cluster rotate [--state-dir DIR | --sample FILE] [--abort]
                             [--quiet-period DURATION] [--timeout DURATION]

Rotates both auth tokens of the local cluster that "gitaly-cluster up" runs from a state
directory: the internal token (Praefect -> Gitaly nodes) and the client token (clients and the
gateway -> Praefect), by GitLab's auth-transitioning procedure, without failing a request:

  Transitioning   every server accepts any token (and counts it)
  RollingOut      the new tokens go into secrets/; waits until every server serves them
  Verifying       waits for a quiet period without an authentication failure
  Enforcing       every server enforces again
  Stable          the new generation is in force

One line per step, with its phase; token values are never printed. The rotation's record is
kept in the state directory (secrets/rotation.json): when this command stops (Ctrl-C, timeout)
the rotation stays where it is, and the next "gitaly-cluster rotate" resumes it.

  --state-dir DIR          the running cluster's state directory
                           (default: the one "up" uses for --sample)
  --sample FILE            the manifest the cluster runs from (default: config/samples/minimal.yaml)
  --abort                  go back to the old tokens of the rotation in progress (the same safe path)
  --quiet-period DURATION  how long no client may fail authentication before enforcing
                           (default: ${DEFAULT_QUIET_PERIOD})
  --timeout DURATION       stop waiting after this long (default: ${DEFAULT_ROTATE_TIMEOUT}); the rotation is kept

Durations are Go durations: 90s, 5m, 1m30s.
Exit status: 0 when the new tokens (with --abort: the old ones) are enforced, 1 on a
timeout or an error, 2 on a usage error, 130 when interrupted.
`;

export class RotateUsageError extends Error {}

export interface RotateOptions {
  /** An explicit state dir, or the manifest whose default state dir to use (undefined: minimal.yaml). */
  target: { stateDir: string } | { sample: string | undefined };
  abort: boolean;
  quietPeriodMs: number;
  timeoutMs: number;
}

function duration(flag: string, value: string | undefined, fallback: string): number {
  const text = value ?? fallback;
  if (!isDuration(text)) throw new RotateUsageError(`${flag} ${JSON.stringify(text)}: want a duration like 90s or 5m`);
  const ms = parseDuration(text);
  if (!(ms > 0)) throw new RotateUsageError(`${flag} must be longer than 0`);
  return ms;
}

/** Flags to RotateOptions; `help` when --help was asked for. Throws RotateUsageError. */
export function parseRotateArgs(argv: readonly string[]): { help: true } | { help: false; options: RotateOptions } {
  let values: ReturnType<typeof parseFlags>["values"];
  try {
    values = parseFlags(argv).values;
  } catch (err) {
    throw new RotateUsageError((err as Error).message);
  }
  if (values.help) return { help: true };
  if (values["state-dir"] !== undefined && values.sample !== undefined) {
    throw new RotateUsageError("give --state-dir or --sample, not both");
  }
  if (values["state-dir"] === "") throw new RotateUsageError("--state-dir needs a directory");
  return {
    help: false,
    options: {
      target:
        values["state-dir"] !== undefined
          ? { stateDir: resolve(values["state-dir"]) }
          : { sample: values.sample === undefined ? undefined : resolve(values.sample) },
      abort: values.abort ?? false,
      quietPeriodMs: duration("--quiet-period", values["quiet-period"], DEFAULT_QUIET_PERIOD),
      timeoutMs: duration("--timeout", values.timeout, DEFAULT_ROTATE_TIMEOUT),
    },
  };
}

function parseFlags(argv: readonly string[]) {
  return parseArgs({
    args: [...argv],
    strict: true,
    allowPositionals: false,
    options: {
      "state-dir": { type: "string" },
      sample: { type: "string" },
      abort: { type: "boolean" },
      "quiet-period": { type: "string" },
      timeout: { type: "string" },
      help: { type: "boolean", short: "h" },
    },
  });
}

/** The state dir the options name: as given, or the one `up` uses for the manifest. */
export async function resolveStateDir(
  target: RotateOptions["target"],
  env: NodeJS.ProcessEnv = process.env,
): Promise<string> {
  if ("stateDir" in target) return target.stateDir;
  const [{ defaultSamplePath }, { defaultStateDir, loadSample }] = await Promise.all([
    import("./cli.js"),
    import("./sample.js"),
  ]);
  return defaultStateDir(loadSample(target.sample ?? defaultSamplePath()).name, env);
}

// ---------------------------------------------------------------------------------------------
// The rotation record and what it asks of a starting cluster.

/** Where the rotation record lives: with the tokens (it holds them during a rotation). */
export function rotationRecordFile(layout: StateLayout): string {
  return join(layout.secretsDir, "rotation.json");
}

/** The token files of the local layout: the store reads the tokens in force from the first of each. */
export function localTokenFiles(layout: StateLayout): Pick<RotationFiles, "internalTokenFiles" | "clientTokenFiles"> {
  return { internalTokenFiles: [layout.gitalyTokenFile], clientTokenFiles: [layout.praefectTokenFile] };
}

/**
 * What servers and clients must be given in `state`'s phase: the machine's own delivery rule
 * (kept internal to machine.ts), restated for a cluster that starts in the middle of a rotation.
 */
/** The machine's own rule (machine.ts), re-exported under the name this module's callers use. */
export const deliveryForPhase = deliveryFor;

export interface RotationInProgress {
  state: RotationState;
  /** [auth] transitioning for every server's config. */
  transitioning: boolean;
  /** The token values the phase delivers (what the token files must hold). */
  tokens: TokenPair;
}

/** The rotation the state dir's record says is under way; undefined when there is none. */
export async function rotationInProgress(layout: StateLayout): Promise<RotationInProgress | undefined> {
  const file = rotationRecordFile(layout);
  if (!existsSync(file)) return undefined;
  const [{ fileRotationStore }, { tokensFor }] = await Promise.all([
    import("../../controller/rotation/files.js"),
    import("../../controller/rotation/driver.js"),
  ]);
  const record: RotationRecord = await fileRotationStore(file, localTokenFiles(layout)).load();
  if (record.state.phase === "Stable") return undefined;
  const delivery = deliveryForPhase(record.state);
  return { state: record.state, transitioning: delivery.transitioning, tokens: tokensFor(delivery, record.tokens) };
}

/** What one run of `rotate` does, from the record's state. */
export type RotationPlan =
  | { kind: "start"; desiredGeneration: number }
  | { kind: "resume"; desiredGeneration: number }
  | { kind: "abort"; desiredGeneration: number }
  | { kind: "nothing-to-abort" };

export function planRotation(state: RotationState, abort: boolean): RotationPlan {
  if (state.phase !== "Stable") {
    const desiredGeneration = state.targetGeneration ?? state.generation + 1;
    // An abort already under way is resumed like any rotation.
    return { kind: abort && !state.aborting ? "abort" : "resume", desiredGeneration };
  }
  if (abort) return { kind: "nothing-to-abort" };
  // Past an aborted generation too: the machine does not restart a rotation that was abandoned.
  return { kind: "start", desiredGeneration: Math.max(state.generation, state.abortedGeneration ?? -1) + 1 };
}

/** One printed line per step: the phase the cluster is in now, and what happened or what it waits on. */
export function stepLine(result: Pick<StepResult, "state" | "message">): string {
  const phase: RotationPhase = result.state.phase;
  const prefix = `${phase}: `;
  const message = result.message.startsWith(prefix) ? result.message.slice(prefix.length) : result.message;
  return `${phase.padEnd("Transitioning".length)}  ${message}`;
}

// ---------------------------------------------------------------------------------------------
// Finding the running cluster's servers in the state dir.

export interface ConfigText {
  path: string;
  text: string;
}

export interface ClusterServersInput {
  /** ports.json: the ports of the run, by listener name ("gitaly-<i>.metrics", "praefect-<i>.metrics", ...). */
  ports: Record<string, number>;
  /** gitaly/<storage>/config.toml files. */
  gitalyConfigs: readonly ConfigText[];
  /** praefect/praefect-<i>/config.toml files. */
  praefectConfigs: readonly ConfigText[];
}

type TomlDoc = Record<string, unknown>;

function tomlOf(c: ConfigText): TomlDoc {
  try {
    return parseToml(c.text) as TomlDoc;
  } catch (err) {
    throw new Error(`${c.path}: not valid TOML: ${(err as Error).message}`);
  }
}

function metricsAddressOf(doc: TomlDoc, path: string): { address: string; port: number } {
  const address = doc.prometheus_listen_addr;
  const port = typeof address === "string" ? Number(/:(\d+)$/.exec(address)?.[1]) : Number.NaN;
  if (typeof address !== "string" || !Number.isInteger(port)) {
    throw new Error(`${path} has no prometheus_listen_addr host:port; its metrics cannot be read`);
  }
  return { address, port };
}

function gitalyStorageOf(doc: TomlDoc, path: string): string {
  const storages = Array.isArray(doc.storage) ? (doc.storage as TomlDoc[]) : [];
  const name = storages[0]?.name;
  if (typeof name !== "string" || name === "") throw new Error(`${path} names no [[storage]]`);
  return name;
}

const LISTENER = /^(gitaly|praefect)-(\d+)\.metrics$/;

/**
 * The servers of the run that ports.json describes: for each metrics listener it lists
 * ("gitaly-<i>.metrics", "praefect-<i>.metrics"), the config whose prometheus_listen_addr has
 * that port and whose name has that index (storage "<cluster>-gitaly-<i>", dir "praefect-<i>").
 * Configs left from an earlier, bigger run match no listener and are ignored. Pure.
 */
export function clusterServers(input: ClusterServersInput): ServerFiles[] {
  const listeners = Object.entries(input.ports)
    .map(([key, port]) => {
      const m = LISTENER.exec(key);
      return m ? { key, role: m[1] as "gitaly" | "praefect", index: Number(m[2]), port } : undefined;
    })
    .filter((l) => l !== undefined)
    .sort((a, b) => (a.role === b.role ? a.index - b.index : a.role === "gitaly" ? -1 : 1));
  if (!listeners.some((l) => l.role === "gitaly") || !listeners.some((l) => l.role === "praefect")) {
    throw new Error("ports.json lists no Gitaly or no Praefect metrics listener");
  }
  const candidates = {
    gitaly: input.gitalyConfigs.map((c) => {
      const doc = tomlOf(c);
      return { path: c.path, name: gitalyStorageOf(doc, c.path), ...metricsAddressOf(doc, c.path) };
    }),
    praefect: input.praefectConfigs.map((c) => {
      const doc = tomlOf(c);
      return { path: c.path, name: basename(dirname(c.path)), ...metricsAddressOf(doc, c.path) };
    }),
  };
  return listeners.map((l): ServerFiles => {
    const named = (name: string) =>
      l.role === "gitaly" ? name.endsWith(`-gitaly-${l.index}`) : name === `praefect-${l.index}`;
    const found = candidates[l.role].filter((c) => c.port === l.port && named(c.name));
    if (found.length === 0) {
      throw new Error(
        `no ${l.role} config serves metrics on port ${l.port}, which ports.json gives ${l.key}; was the cluster started from this state directory?`,
      );
    }
    if (found.length > 1) {
      throw new Error(`${found.map((c) => c.path).join(" and ")} both claim ${l.key} (port ${l.port})`);
    }
    const c = found[0] as (typeof found)[number];
    return { name: c.name, role: l.role, configPath: c.path, metricsUrl: `http://${c.address}/metrics` };
  });
}

function readConfigs(dir: string): ConfigText[] {
  if (!existsSync(dir)) return [];
  const out: ConfigText[] = [];
  for (const entry of readdirSync(dir, { withFileTypes: true })) {
    if (!entry.isDirectory()) continue;
    const path = join(dir, entry.name, "config.toml");
    if (existsSync(path)) out.push({ path, text: readFileSync(path, "utf8") });
  }
  return out;
}

function readPorts(layout: StateLayout): Record<string, number> {
  let parsed: unknown;
  try {
    parsed = JSON.parse(readFileSync(layout.portsFile, "utf8"));
  } catch (err) {
    throw new Error(`reading ${layout.portsFile}: ${(err as Error).message}`);
  }
  if (typeof parsed !== "object" || parsed === null) throw new Error(`${layout.portsFile}: not a JSON object`);
  return Object.fromEntries(Object.entries(parsed).filter((e): e is [string, number] => Number.isInteger(e[1])));
}

function uniq(paths: string[]): string[] {
  return [...new Set(paths)];
}

/**
 * The rotation's files for the cluster in `layout`: its servers, and the token files their configs
 * name plus the gateway's. The runner hands the gateway Praefect's own [auth] token_file
 * (secrets/praefect-token) as --token-file, and the gateway re-reads it when it changes, so the
 * gateway follows the client token.
 */
export async function localRotationFiles(layout: StateLayout): Promise<RotationFiles> {
  const servers = clusterServers({
    ports: readPorts(layout),
    gitalyConfigs: readConfigs(layout.gitalyDir),
    praefectConfigs: readConfigs(layout.praefectDir),
  });
  const { tokenFilesOfConfigs } = await import("../../controller/rotation/files.js");
  const named = await tokenFilesOfConfigs(servers);
  const own = localTokenFiles(layout);
  // The layout's files first: the store reads the tokens in force from the first of each kind.
  return {
    servers,
    internalTokenFiles: uniq([...own.internalTokenFiles, ...named.internal]),
    clientTokenFiles: uniq([...own.clientTokenFiles, ...named.client]),
  };
}

// ---------------------------------------------------------------------------------------------
// Processes: the runner's liveness, and one `rotate` at a time.

export function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === "EPERM";
  }
}

export function readPidFile(file: string): number | undefined {
  try {
    const pid = Number.parseInt(readFileSync(file, "utf8").trim(), 10);
    return Number.isInteger(pid) && pid > 0 ? pid : undefined;
  } catch {
    return undefined;
  }
}

/** The pid of the live runner holding the state dir's lock; undefined when none runs. */
export function liveRunnerPid(layout: StateLayout): number | undefined {
  const pid = readPidFile(layout.lockFile);
  return pid !== undefined && isAlive(pid) ? pid : undefined;
}

/** Two rotations stepping the same record would undo each other's deliveries: one at a time. */
function lockRotation(layout: StateLayout): { release(): void } {
  const file = join(layout.root, "rotate.pid");
  for (let attempt = 0; attempt < 2; attempt++) {
    try {
      const fd = openSync(file, "wx", 0o644);
      writeSync(fd, `${process.pid}\n`);
      closeSync(fd);
      return {
        release() {
          if (readPidFile(file) === process.pid) rmSync(file, { force: true });
        },
      };
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== "EEXIST") throw err;
      const holder = readPidFile(file);
      if (holder !== undefined && holder !== process.pid && isAlive(holder)) {
        throw new Error(`another "gitaly-cluster rotate" (pid ${holder}) is working on ${layout.root}`);
      }
      // Left by a rotate that was killed.
      rmSync(file, { force: true });
    }
  }
  throw new Error(`could not take the lock ${file}`);
}

// ---------------------------------------------------------------------------------------------
// The command.

export interface RotateIo {
  /** Step lines and results (stdout). */
  out(line: string): void;
  /** Errors and notes (stderr). */
  err(line: string): void;
}

const stdio: RotateIo = {
  out: (line) => process.stdout.write(`${line}\n`),
  err: (line) => process.stderr.write(`gitaly-cluster rotate: ${line}\n`),
};

function formatMs(ms: number): string {
  if (ms % 3_600_000 === 0) return `${ms / 3_600_000}h`;
  if (ms % 60_000 === 0) return `${ms / 60_000}m`;
  return `${ms / 1000}s`;
}

export async function runRotate(argv: string[], io: RotateIo = stdio): Promise<number> {
  let parsed: ReturnType<typeof parseRotateArgs>;
  try {
    parsed = parseRotateArgs(argv);
  } catch (err) {
    io.err((err as Error).message);
    process.stderr.write(ROTATE_USAGE);
    return 2;
  }
  if (parsed.help) {
    process.stdout.write(ROTATE_USAGE);
    return 0;
  }
  try {
    return await rotate(parsed.options, io);
  } catch (err) {
    io.err((err as Error).message);
    return 1;
  }
}

async function rotate(options: RotateOptions, io: RotateIo): Promise<number> {
  const layout = stateLayout(await resolveStateDir(options.target));
  if (!existsSync(layout.marker)) {
    io.err(`${layout.root} holds no local cluster; start one with "gitaly-cluster up --state-dir ${layout.root}"`);
    return 1;
  }
  const recordFile = rotationRecordFile(layout);
  const runner = liveRunnerPid(layout);
  if (runner === undefined) {
    const pending = existsSync(recordFile) ? await rotationInProgress(layout) : undefined;
    io.err(
      `the local cluster in ${layout.root} is not running (no live runner in ${layout.lockFile}); ` +
        `start it with "gitaly-cluster up --state-dir ${layout.root}", then run rotate again` +
        (pending
          ? ` (the rotation to generation ${pending.state.targetGeneration} in phase ${pending.state.phase} resumes)`
          : ""),
    );
    return 1;
  }
  const lock = lockRotation(layout);
  try {
    return await rotateRunning(options, io, layout, runner);
  } finally {
    lock.release();
  }
}

async function rotateRunning(
  options: RotateOptions,
  io: RotateIo,
  layout: StateLayout,
  runner: number,
): Promise<number> {
  const [{ runRotation, generationsOf }, { fileRotationEnvironment, fileRotationStore }] = await Promise.all([
    import("../../controller/rotation/driver.js"),
    import("../../controller/rotation/files.js"),
  ]);
  const files = await localRotationFiles(layout);
  const env = fileRotationEnvironment(files);
  const recordFile = rotationRecordFile(layout);
  const store = fileRotationStore(recordFile, files);
  const record = await store.load();
  const plan = planRotation(record.state, options.abort);
  const { state } = record;
  const where = `the local cluster in ${layout.root} (runner pid ${runner})`;
  switch (plan.kind) {
    case "nothing-to-abort":
      io.err(
        `no rotation is in progress in ${layout.root} (generation ${state.generation} is in force); nothing to abort`,
      );
      return 1;
    case "start": {
      // A cluster still starting may re-render its configs under the rotation: wait for READY.
      const down = (await env.observe()).filter((s) => !s.reachable);
      if (down.length > 0) {
        io.err(
          `${where} does not serve yet (cannot read the metrics of ${down.map((s) => s.name).join(", ")}); wait until it prints READY, then run rotate again`,
        );
        return 1;
      }
      io.out(
        `rotating both tokens of ${where}: generation ${state.generation} -> ${plan.desiredGeneration} ` +
          `(quiet period ${formatMs(options.quietPeriodMs)}, timeout ${formatMs(options.timeoutMs)})`,
      );
      break;
    }
    case "resume":
      io.out(
        `resuming the ${state.aborting ? "abort of the " : ""}rotation to generation ${plan.desiredGeneration} of ${where} ` +
          `in phase ${state.phase} (quiet period ${formatMs(options.quietPeriodMs)}, timeout ${formatMs(options.timeoutMs)})`,
      );
      break;
    case "abort":
      io.out(
        `aborting the rotation to generation ${plan.desiredGeneration} of ${where} in phase ${state.phase}: ` +
          `going back to the tokens of generation ${state.generation}`,
      );
      break;
  }

  const stop = new AbortController();
  let stoppedBy: "signal" | "runner" | undefined;
  let signals = 0;
  const onSignal = (signal: NodeJS.Signals) => {
    signals++;
    if (signals > 1) process.exit(130);
    stoppedBy ??= "signal";
    io.err(`${signal}: stopping after this step; the rotation keeps its state (${signal} again to stop at once)`);
    stop.abort();
  };
  const handled = ["SIGINT", "SIGTERM", "SIGHUP"] as const;
  for (const s of handled) process.on(s, onSignal);
  let lastLine = "";
  let result: RunRotationResult;
  try {
    result = await runRotation({
      env,
      store,
      desiredGeneration: plan.desiredGeneration,
      abort: () => plan.kind === "abort",
      signal: stop.signal,
      timeoutMs: options.timeoutMs,
      quietPeriodMs: options.quietPeriodMs,
      intervalMs: STEP_INTERVAL_MS,
      onStep: (step) => {
        const line = stepLine(step);
        if (line !== lastLine) io.out(line);
        lastLine = line;
        if (!stop.signal.aborted && !isAlive(runner)) {
          stoppedBy = "runner";
          stop.abort();
        }
      },
    });
  } finally {
    for (const s of handled) process.off(s, onSignal);
  }
  const resume = `run "gitaly-cluster rotate --state-dir ${layout.root}"`;
  switch (result.outcome) {
    case "Completed": {
      const g = generationsOf(currentTokens(files));
      const summary = `generation ${result.state.generation} is in force: internal token generation ${g.internal}, client token generation ${g.client}`;
      if (plan.kind === "abort") {
        io.err(`too late to abort: the rotation was already enforcing the new tokens; ${summary}`);
        return 1;
      }
      io.out(`done: ${summary} (files in ${layout.secretsDir})`);
      return 0;
    }
    case "Aborted":
      if (plan.kind === "abort") {
        io.out(`aborted: the tokens of generation ${result.state.generation} are enforced again`);
        return 0;
      }
      io.err(
        `the rotation to generation ${plan.desiredGeneration} was aborted earlier; the tokens of generation ${result.state.generation} are enforced again; ${resume} to start a new rotation`,
      );
      return 1;
    case "Unchanged":
      io.out(`nothing to do: generation ${result.state.generation} is in force`);
      return 0;
    case "TimedOut":
      io.err(
        `timed out after ${formatMs(options.timeoutMs)} in phase ${result.state.phase}: ${result.state.lastObservation ?? "no observation"}. ` +
          `The rotation stays there (recorded in ${recordFile}); ${resume} to resume it, or add --abort to go back to the old tokens`,
      );
      return 1;
    case "Interrupted":
      if (stoppedBy === "runner") {
        io.err(
          `the local cluster stopped (runner pid ${runner} exited) in phase ${result.state.phase}; start it again with "gitaly-cluster up" ` +
            `(it renders the configs the rotation needs) and ${resume} to resume`,
        );
        return 1;
      }
      io.err(
        `stopped watching in phase ${result.state.phase}; the rotation is recorded in ${recordFile} and ${resume} resumes it (or add --abort to go back)`,
      );
      return 130;
  }
}

function currentTokens(files: RotationFiles): TokenPair {
  const read = (path: string | undefined) => (path === undefined ? "" : readFileSync(path, "utf8").trim());
  return { internal: read(files.internalTokenFiles[0]), client: read(files.clientTokenFiles[0]) };
}
