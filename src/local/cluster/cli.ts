// `gitaly-cluster up`: flags, signals, and the lifetime of a local cluster. The first
// SIGINT/SIGTERM/SIGHUP stops it in order and exits 0; a second one stops waiting and exits
// at once (the children then get SIGKILL from the exit hook and their parent-death signal).
import { dirname, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { parseArgs } from "node:util";
import type { LogLevel } from "../../shared/logging.js";
import { banner, readyLine } from "./banner.js";
import { defaultStateDir, loadSample } from "./sample.js";
import { Teardown } from "./teardown.js";
import { startLocalCluster, type UpOptions } from "./up.js";
import { DEFAULT_HTTP_PORT, DEFAULT_PRAEFECT_PORT, DEFAULT_PRAEFECT_TLS_PORT, UP_USAGE } from "./usage.js";

const LOG_LEVELS: readonly LogLevel[] = ["debug", "info", "warn", "error"];

/** config/samples/minimal.yaml of the repository this program was built from. */
export function defaultSamplePath(): string {
  const here = dirname(fileURLToPath(import.meta.url));
  // src/local/cluster and dist/local/cluster are both three levels below the repository.
  return resolve(here, "../../../config/samples/minimal.yaml");
}

export class UsageError extends Error {}

function port(flag: string, value: string | undefined, fallback: number): number {
  if (value === undefined) return fallback;
  const n = Number(value);
  if (!/^\d{1,5}$/.test(value) || n > 65535)
    throw new UsageError(`${flag} ${JSON.stringify(value)}: want a port, 0-65535`);
  return n;
}

/** Flags to UpOptions; `help` when --help was asked for. Throws UsageError. */
export function parseUpArgs(
  argv: readonly string[],
  env: NodeJS.ProcessEnv = process.env,
): { help: true } | { help: false; options: UpOptions } {
  let values: ReturnType<typeof parse>["values"];
  try {
    values = parse(argv).values;
  } catch (err) {
    throw new UsageError((err as Error).message);
  }
  if (values.help) return { help: true };
  const level = (values["log-level"] ?? "info") as LogLevel;
  if (!LOG_LEVELS.includes(level)) throw new UsageError(`--log-level must be one of ${LOG_LEVELS.join(", ")}`);
  const sample = resolve(values.sample ?? defaultSamplePath());
  const options: UpOptions = {
    sample,
    // The default depends on the manifest's name; resolved once the manifest is read.
    stateDir: values["state-dir"] ? resolve(values["state-dir"]) : "",
    reset: values.reset ?? false,
    httpPort: port("--http-port", values["http-port"], DEFAULT_HTTP_PORT),
    praefectPort: port("--praefect-port", values["praefect-port"], DEFAULT_PRAEFECT_PORT),
    praefectTlsPort: port("--praefect-tls-port", values["praefect-tls-port"], DEFAULT_PRAEFECT_TLS_PORT),
    logLevel: level,
  };
  if (options.stateDir === "") options.stateDir = defaultStateDir(loadSample(sample).name, env);
  return { help: false, options };
}

function parse(argv: readonly string[]) {
  return parseArgs({
    args: [...argv],
    strict: true,
    allowPositionals: false,
    options: {
      sample: { type: "string" },
      "state-dir": { type: "string" },
      reset: { type: "boolean" },
      "http-port": { type: "string" },
      "praefect-port": { type: "string" },
      "praefect-tls-port": { type: "string" },
      "log-level": { type: "string" },
      help: { type: "boolean", short: "h" },
    },
  });
}

const say = (line: string) => process.stderr.write(`[gitaly-cluster] ${line}\n`);

export async function runUp(argv: string[]): Promise<number> {
  let parsed: ReturnType<typeof parseUpArgs>;
  try {
    parsed = parseUpArgs(argv);
  } catch (err) {
    process.stderr.write(`gitaly-cluster up: ${(err as Error).message}\n`);
    if (!(err instanceof UsageError)) return 1;
    process.stderr.write(UP_USAGE);
    return 2;
  }
  if (parsed.help) {
    process.stdout.write(UP_USAGE);
    return 0;
  }
  let stopFailures = 0;
  const teardown = new Teardown((what, err) => {
    stopFailures++;
    say(`stopping ${what} failed: ${(err as Error).message}`);
  });
  let signals = 0;
  let resolveStop: () => void = () => {};
  const stopRequested = new Promise<void>((r) => {
    resolveStop = r;
  });
  const onSignal = (signal: NodeJS.Signals) => {
    signals++;
    if (signals === 1) {
      say(`${signal}: stopping (gateway, Praefect, Gitaly, PostgreSQL); ${signal} again to stop at once`);
      resolveStop();
      void teardown.run();
      return;
    }
    say(`${signal} again: stopping at once`);
    process.exit(130);
  };
  for (const s of ["SIGINT", "SIGTERM", "SIGHUP"] as const) process.on(s, onSignal);
  // A reader that went away (`./scripts/up | head`) must not take the cluster down with an EPIPE.
  process.stdout.on("error", () => {});

  let ready: Awaited<ReturnType<typeof startLocalCluster>>;
  try {
    ready = await startLocalCluster(parsed.options, { progress: say }, teardown);
  } catch (err) {
    const requested = signals > 0;
    if (!requested) say(`failed: ${(err as Error).message}`);
    await teardown.run();
    if (requested) say("stopped");
    return requested && stopFailures === 0 ? 0 : 1;
  }
  if (signals === 0) {
    process.stdout.write(banner(ready));
    process.stdout.write(readyLine(ready));
  }
  await stopRequested;
  await teardown.run();
  say("stopped");
  return stopFailures === 0 ? 0 : 1;
}
