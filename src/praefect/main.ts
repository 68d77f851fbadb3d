#!/usr/bin/env node
// The praefect program, with upstream's command line:
//   praefect -config FILE [serve]                run the router (the default)
//   praefect -config FILE <subcommand> [flags]   sql-ping, sql-migrate, dataloss, … (see cli/)
//   praefect configuration validate < FILE       validate TOML read from stdin
//   praefect -version
import { createServer } from "node:http";
import { Writable } from "node:stream";
import { text } from "node:stream/consumers";
import pg from "pg";
import type { Registry } from "prom-client";
import { ConfigError, formatIssue } from "../shared/config/issues.js";
import { parseListenAddress } from "../shared/config/listen-address.js";
import { type FileWatcher, watchFiles } from "../shared/file-watch.js";
import { createLogger, type Logger, type LogLevel } from "../shared/logging.js";
import { createRegistry } from "../shared/metrics.js";
import { DEFAULT_CHECKS } from "./cli/check.js";
import { databaseAddress, hasDirectConnection, pgConnectionConfig } from "./config/database.js";
import { readPraefectAuthToken } from "./config/environment.js";
import { loadPraefectConfigFile } from "./config/load.js";
import {
  nodeTokensOf,
  nodeTopologyChanges,
  reloadWatchedFiles,
  servingKeyPairFiles,
  tlsListenerChanges,
  withNodeTokens,
} from "./config/reload.js";
import { type PraefectConfig, stripListenScheme } from "./config/schema.js";
import { migrate, planMigrations } from "./datastore/migrate.js";
import { createNodeManager } from "./nodes/manager.js";
import { praefectNameFor } from "./nodes/praefect-name.js";
import { staleJobIntervalsFromEnv } from "./replication/stale-jobs.js";
import { startVerifier } from "./replication/verifier.js";
import { startReplication } from "./replication/workers.js";

export const PRAEFECT_VERSION = "0.1.0-ts";

/** Set to 1/true to apply pending migrations at start instead of refusing to serve. */
export const AUTO_MIGRATE_ENV = "PRAEFECT_AUTO_MIGRATE";

const USAGE = `usage:
  praefect -config <config.toml> [serve]
  praefect -config <config.toml> <subcommand> [flags]
  praefect configuration validate < <config.toml>
  praefect -version

subcommands: sql-ping, sql-migrate, sql-migrate-status, sql-migrate-down, dial-nodes,
  list-storages, check, dataloss, accept-dataloss, set-replication-factor, metadata,
  track-repository, remove-repository, verify
`;

/** Stops, in reverse order of start, whatever serve() has started so far. */
class Stack {
  private readonly steps: { what: string; stop: () => Promise<void> }[] = [];
  push(what: string, stop: () => Promise<void>): void {
    this.steps.push({ what, stop });
  }
  async unwind(logger: Logger): Promise<void> {
    for (const step of this.steps.splice(0).reverse()) {
      try {
        await step.stop();
      } catch (err) {
        logger.error({ err: (err as Error).message }, `stopping ${step.what} failed`);
      }
    }
  }
}

/** Serves /metrics and, like upstream, the database-derived metrics on /db_metrics. */
function serveMetrics(
  address: string,
  registry: Registry,
  dbRegistry: Registry,
): Promise<{ port: number; close(): Promise<void> }> {
  const server = createServer((req, res) => {
    const path = (req.url ?? "").split("?")[0];
    const source = path === "/metrics" ? registry : path === "/db_metrics" ? dbRegistry : null;
    if (!source) {
      res.writeHead(404).end("not found\n");
      return;
    }
    source.metrics().then(
      (body) => res.writeHead(200, { "content-type": source.contentType }).end(body),
      (err: unknown) => res.writeHead(500).end(`${(err as Error).message}\n`),
    );
  });
  const { host, port } = parseListenAddress(address);
  return new Promise((resolve, reject) => {
    server.once("error", reject);
    server.listen(port, host === "" ? undefined : host, () => {
      const a = server.address();
      resolve({
        port: typeof a === "object" && a ? a.port : port,
        close: () => new Promise((r) => server.close(() => r())),
      });
    });
  });
}

async function withinTimeout(work: Promise<void>, ms: number, logger: Logger): Promise<void> {
  let timer: NodeJS.Timeout | undefined;
  const timedOut = new Promise<"timeout">((resolve) => {
    timer = setTimeout(() => resolve("timeout"), ms);
  });
  try {
    if ((await Promise.race([work, timedOut])) === "timeout") {
      logger.warn({ timeout_ms: ms }, "replication jobs still running at shutdown were abandoned");
    }
  } finally {
    clearTimeout(timer);
  }
}

function isTruthy(value: string | undefined): boolean {
  return value !== undefined && /^(1|t|true|yes|on)$/i.test(value);
}

/** Upstream does not migrate on start; we refuse to serve on a schema we do not match, unless told to migrate. */
async function ensureMigrated(pool: pg.Pool, logger: Logger, configPath: string): Promise<void> {
  const pending = await planMigrations(pool, { ignoreUnknown: true });
  if (pending.length === 0) return;
  if (!isTruthy(process.env[AUTO_MIGRATE_ENV])) {
    throw new Error(
      `${pending.length} migrations have not been run: run "praefect -config ${configPath} sql-migrate" (or set ${AUTO_MIGRATE_ENV}=1)`,
    );
  }
  const applied = await migrate(pool, { ignoreUnknown: true });
  logger.info({ applied: applied.length }, "applied database migrations");
}

async function checkPostgresVersion(pool: pg.Pool): Promise<void> {
  const { rows } = await pool.query<{ server_version_num: string }>("SHOW server_version_num");
  const version = Number(rows[0]?.server_version_num);
  if (!(version >= 110_000)) throw new Error(`postgres server version too old: ${version}`);
}

function routerConfig(config: PraefectConfig, token: string) {
  return {
    ...config,
    listen_addr: stripListenScheme(config.listen_addr, "tcp"),
    tls_listen_addr: stripListenScheme(config.tls_listen_addr, "tls"),
    socket_path: stripListenScheme(config.socket_path, "unix"),
    auth: { token, transitioning: config.auth.transitioning },
  };
}

async function serve(configPath: string): Promise<number> {
  let config: PraefectConfig;
  let warnings: Awaited<ReturnType<typeof loadPraefectConfigFile>>["warnings"];
  try {
    ({ config, warnings } = await loadPraefectConfigFile(configPath));
  } catch (err) {
    if (err instanceof ConfigError) {
      for (const e of err.errors) process.stderr.write(`validating config: ${formatIssue(e)}\n`);
    } else {
      process.stderr.write(`error reading config file: ${(err as Error).message}\n`);
    }
    return 1;
  }
  // logrus's level names, in pino's words.
  const levelNames: Record<string, string> = { warning: "warn", panic: "fatal" };
  const level = (levelNames[config.logging.level] ?? config.logging.level) as LogLevel;
  const logger = createLogger({ component: "praefect", level });
  for (const w of warnings) logger.warn({ key: w.key }, `configuration: ${w.message}`);
  logger.info({ version: PRAEFECT_VERSION }, "Starting Praefect");

  // SIGHUP's default action would kill us while starting; remembered and applied once serving.
  let reloadRequested = false;
  let reload: (() => Promise<void>) | undefined;
  process.on("SIGHUP", () => {
    if (reload) void reload();
    else reloadRequested = true;
  });

  const stack = new Stack();
  try {
    const registry = createRegistry();
    const dbRegistry = createRegistry({ defaultMetrics: false });

    logger.info({ database_address: databaseAddress(config.database) }, "establishing database connection");
    const pool = new pg.Pool({ ...pgConnectionConfig(config.database), max: 20, connectionTimeoutMillis: 10_000 });
    // node-postgres emits errors of idle connections (the server went away); unhandled they would kill us.
    pool.on("error", (err) => logger.error({ err: err.message }, "database connection lost"));
    stack.push("database pool", () => pool.end());
    await checkPostgresVersion(pool);
    logger.info("database connection established");
    await ensureMigrated(pool, logger, configPath);

    const token = await readPraefectAuthToken(config);
    const praefectName = praefectNameFor(config);
    const nodes = createNodeManager({ config, db: pool, praefectName, logger, registry });
    stack.push("node manager", () => nodes.stop());
    await nodes.start();
    logger.info("background started: gitaly nodes health monitoring");

    const devNull = new Writable({ write: (_chunk, _encoding, callback) => callback() });
    // Built per run: the checks dial the nodes, and must present the tokens in force now.
    const runningConfig = config;
    const readinessChecks = DEFAULT_CHECKS.map((factory) => ({
      name: factory(runningConfig, devNull, true).name,
      run: () =>
        factory(
          withNodeTokens(runningConfig, (vs, storage) => nodes.node(vs, storage)?.token),
          devNull,
          true,
        ).run(5_000),
    }));
    const { startPraefectRouter } = await import("./server/praefect-server.js");
    const router = await startPraefectRouter({
      config: routerConfig(config, token),
      logger,
      registry,
      nodes,
      db: pool,
      ...(hasDirectConnection(config.database)
        ? { notificationsConnection: pgConnectionConfig(config.database, { direct: true }) }
        : {}),
      praefectName,
      readinessChecks,
    });
    stack.push("router", () => router.shutdown());
    for (const [schema, address] of Object.entries(router.addresses)) logger.info({ schema, address }, "listening");

    const staleJobIntervals = staleJobIntervalsFromEnv(process.env);
    if (Object.keys(staleJobIntervals).length > 0) {
      logger.warn(staleJobIntervals, "stale replication job handling overridden through the environment");
    }
    const replication = startReplication({
      config,
      nodes,
      db: pool,
      logger,
      registry,
      dbRegistry,
      intervals: staleJobIntervals,
    });
    // Jobs in flight get the graceful stop timeout; one still running after that is left to the
    // stale-job sweep of another Praefect (or of this one after a restart), as upstream does.
    stack.push("replication", () => withinTimeout(replication.stop(), config.graceful_stop_timeout, logger));
    logger.info("background started: processing of the replication events");
    if (config.background_verification.verification_interval > 0) {
      const verifier = startVerifier({ config, nodes, db: pool, logger, registry });
      stack.push("verifier", () => verifier.stop());
      logger.info("background verifier started");
    } else {
      logger.info("background verifier is disabled");
    }

    if (config.prometheus_listen_addr !== "") {
      const metrics = await serveMetrics(config.prometheus_listen_addr, registry, dbRegistry);
      stack.push("metrics listener", () => metrics.close());
      logger.info({ address: config.prometheus_listen_addr }, "Starting prometheus listener");
    }

    // Live reload of [auth] and of the tokens presented to the nodes: the config file and every
    // token file are watched, and SIGHUP forces a look. Everything is read first and swapped
    // after, with no await in between, so a reload applies entirely or not at all; a file that
    // cannot be read or holds no token fails the whole reload and the previous settings stay.
    // The TLS key pair is watched too and reloaded on its own: a renewed certificate must not wait
    // for a token file to be fixed, nor a token rotation for a certificate.
    const keyPairFiles = servingKeyPairFiles(config);
    let reloading: Promise<void> = Promise.resolve();
    let watcher: FileWatcher | undefined;
    let watchedKey = "";
    const watch = (paths: string[]) => {
      const key = paths.join("\u0000");
      if (key === watchedKey) return;
      watcher?.close();
      watchedKey = key;
      const w = watchFiles(paths, () => reload?.(), { intervalMs: 1_000 });
      watcher = w;
      // The files were read before the watcher took its baseline: look once more past it, so a
      // change in between is not missed.
      void w.check().then(() => reload?.());
    };
    const reloadOnce = async () => {
      try {
        const { config: fresh } = await loadPraefectConfigFile(configPath);
        const authToken = await readPraefectAuthToken(fresh);
        const topology = nodeTopologyChanges(runningConfig, fresh);
        if (topology.length > 0) {
          logger.warn(
            { changes: topology },
            "node storages or addresses changed in the configuration: not applied, restart Praefect to apply them",
          );
        }
        const listener = tlsListenerChanges(runningConfig, fresh);
        if (listener.length > 0) {
          logger.warn(
            { changes: listener },
            "the TLS listener changed in the configuration: not applied, restart Praefect to apply it",
          );
        }
        router.reload({ token: authToken, transitioning: fresh.auth.transitioning });
        nodes.updateTokens(nodeTokensOf(fresh));
        watch(reloadWatchedFiles(configPath, fresh, keyPairFiles));
      } catch (err) {
        logger.error(
          { err: (err as Error).message },
          "reload failed; the previous auth settings and node tokens stay in force",
        );
      }
      await router.reloadTls();
    };
    reload = () => {
      reloading = reloading.then(reloadOnce);
      return reloading;
    };
    watch(reloadWatchedFiles(configPath, config, keyPairFiles));
    stack.push("file watcher", async () => {
      reload = undefined;
      watcher?.close();
    });
    if (reloadRequested) void reload();
  } catch (err) {
    logger.error({ err: (err as Error).message }, "Praefect shutdown");
    await stack.unwind(logger);
    logger.flush();
    return 1;
  }

  return new Promise<number>((resolve) => {
    let stopping = false;
    const stop = (signal: string) => {
      if (stopping) return;
      stopping = true;
      logger.info({ signal, timeout_ms: config.graceful_stop_timeout }, "shutting down: draining in-flight calls");
      stack.unwind(logger).then(() => {
        logger.info("Praefect shutdown");
        logger.flush();
        resolve(0);
      });
    };
    process.on("SIGTERM", () => stop("SIGTERM"));
    process.on("SIGINT", () => stop("SIGINT"));
  });
}

/** Splits `[-config FILE] [-version] [command...]` the way urfave/cli takes root flags. */
export function parseRootArgs(argv: readonly string[]): {
  configPath: string;
  version: boolean;
  help: boolean;
  rest: string[];
} {
  let configPath = "";
  let version = false;
  let help = false;
  let i = 0;
  for (; i < argv.length; i++) {
    const arg = argv[i] as string;
    const m = /^--?(config|version|v|help|h)(?:=(.*))?$/.exec(arg);
    if (!m) break;
    if (m[1] === "config") {
      if (m[2] !== undefined) configPath = m[2];
      else configPath = argv[++i] ?? "";
    } else if (m[1] === "version" || m[1] === "v") version = true;
    else help = true;
  }
  return { configPath, version, help, rest: argv.slice(i) };
}

export async function main(argv: string[]): Promise<number> {
  const { configPath, version, help, rest } = parseRootArgs(argv);
  if (version) {
    process.stdout.write(`Praefect, version ${PRAEFECT_VERSION}\n`);
    return 0;
  }
  if (help) {
    process.stdout.write(USAGE);
    return 0;
  }
  const [command, ...args] = rest;
  if (command === "configuration" && args[0] === "validate") {
    const { runCommand } = await import("./cli/index.js");
    return runCommand("configuration validate", args.slice(1), {
      out: process.stdout,
      err: process.stderr,
      stdin: await text(process.stdin),
    });
  }
  if (configPath === "") {
    process.stderr.write(`${USAGE}Required flag "config" not set\n`);
    return 2;
  }
  if (command === undefined || command === "serve") {
    if (args.length > 0) {
      process.stderr.write("serve doesn't accept positional arguments\n");
      return 1;
    }
    return serve(configPath);
  }
  let config: PraefectConfig;
  try {
    config = (await loadPraefectConfigFile(configPath)).config;
  } catch (err) {
    const detail = err instanceof ConfigError ? err.errors.map(formatIssue).join("; ") : (err as Error).message;
    process.stderr.write(
      `${err instanceof ConfigError ? "validating config" : "error reading config file"}: ${detail}\n`,
    );
    return 1;
  }
  // Loaded only for subcommands: serve should not pay for modules it does not use.
  const { runCommand } = await import("./cli/index.js");
  return runCommand(command, args, { out: process.stdout, err: process.stderr, config });
}

main(process.argv.slice(2)).then(
  (code) => {
    // Channels and pools may keep the event loop alive after a command; its work is done.
    process.exit(code);
  },
  (err: unknown) => {
    process.stderr.write(`praefect: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}\n`);
    process.exit(1);
  },
);
