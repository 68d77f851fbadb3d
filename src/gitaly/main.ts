#!/usr/bin/env node
// The gitaly program:
//   gitaly serve <config.toml>        run the server (also: gitaly <config.toml>)
//   gitaly configuration validate     validate TOML read from stdin
//   gitaly check <config.toml>        check the configuration and what it names
import { text } from "node:stream/consumers";
import { parseArgs } from "node:util";
import { ConfigError } from "../shared/config/issues.js";
import { createLogger, type LogLevel } from "../shared/logging.js";
import { loadGitalyConfigFile } from "./config/load.js";
import { SERVER_VERSION, startGitalyServer } from "./server/gitaly-server.js";

// The validate/check commands pull in an HTTP client and more; loaded only when used,
// because every module costs start-up time for `serve`.
const cli = () => import("./config/cli.js");

const USAGE = `usage:
  gitaly serve <gitaly_config_file>
  gitaly <gitaly_config_file>
  gitaly configuration validate < <gitaly_config_file>
  gitaly check <gitaly_config_file>
  gitaly --version
`;

async function serve(configPath: string): Promise<number> {
  let loaded: Awaited<ReturnType<typeof loadGitalyConfigFile>>;
  try {
    loaded = await loadGitalyConfigFile(configPath);
  } catch (err) {
    // Invalid values stop start-up, naming each key.
    if (err instanceof ConfigError) {
      for (const e of err.errors) process.stderr.write(`invalid configuration: ${e.key}: ${e.message}\n`);
    } else {
      process.stderr.write(`${(err as Error).message}\n`);
    }
    return 1;
  }
  const { config, warnings } = loaded;
  const logger = createLogger({ component: "gitaly", level: config.logging.level as LogLevel });
  for (const w of warnings) logger.warn({ key: w.key }, `configuration: ${w.message}`);

  // SIGHUP's default action would kill us while starting; until the server is up a
  // reload request is remembered and applied once it is.
  let reloadRequested = false;
  let reload: (() => void) | undefined;
  process.on("SIGHUP", () => {
    if (reload) reload();
    else reloadRequested = true;
  });
  const server = await startGitalyServer({ config, configPath, logger });
  reload = () => void server.reload();
  if (reloadRequested) reload();
  return new Promise<number>((resolve) => {
    let stopping = false;
    const stop = (signal: string) => {
      if (stopping) return;
      stopping = true;
      logger.info({ signal }, "shutting down: draining in-flight calls");
      server.shutdown().then(
        () => {
          logger.info("stopped");
          logger.flush();
          resolve(0);
        },
        (err: unknown) => {
          logger.error({ err }, "shutdown failed");
          resolve(1);
        },
      );
    };
    process.on("SIGTERM", () => stop("SIGTERM"));
    process.on("SIGINT", () => stop("SIGINT"));
  });
}

export async function main(argv: string[]): Promise<number> {
  const { positionals, values } = parseArgs({
    args: argv,
    allowPositionals: true,
    strict: false,
    options: { version: { type: "boolean" }, help: { type: "boolean", short: "h" } },
  });
  if (values.version) {
    process.stdout.write(`Gitaly, version ${SERVER_VERSION}\n`);
    return 0;
  }
  const [cmd, ...rest] = positionals;
  if (values.help || cmd === undefined) {
    process.stdout.write(USAGE);
    return cmd === undefined && !values.help ? 2 : 0;
  }
  switch (cmd) {
    case "serve":
      if (!rest[0]) break;
      return serve(rest[0]);
    case "configuration":
      if (rest[0] !== "validate") break;
      return (await cli()).runConfigurationValidate(await text(process.stdin), process.stdout, process.stderr);
    case "check":
      return (await cli()).runCheck(rest[0] ?? "", process.stdout, process.stderr);
    default:
      // `gitaly <config>` is the historic form of `gitaly serve <config>`.
      if (rest.length === 0) return serve(cmd);
  }
  process.stderr.write(USAGE);
  return 2;
}

main(process.argv.slice(2)).then(
  (code) => {
    // A drained server may still hold idle sockets or timers; the work is done.
    process.exit(code);
  },
  (err: unknown) => {
    process.stderr.write(`gitaly: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}\n`);
    process.exitCode = 1;
  },
);
