// Starts the real Praefect program (dist/praefect/main.js) for cluster tests: a temp dir with a
// config.toml naming the given Gitaly nodes and database, free loopback ports, the schema
// migrated at start (PRAEFECT_AUTO_MIGRATE=1), and a wait until the health service answers.
// Its subcommands run against the same configuration through `cli()`.
import { spawn } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import * as grpc from "@grpc/grpc-js";
import { Health, HealthCheckResponse_ServingStatus } from "../../src/gen/grpc/health/v1/health_pb.js";
import { v2AuthInterceptor } from "../../src/shared/auth/v2-token.js";
import { createClient } from "../../src/shared/grpc/service.js";
import { freePort, waitFor } from "../../src/shared/net.js";
import { type ManagedProcess, startProcess } from "../../src/shared/process.js";
import { repoRoot } from "./gitaly.js";

export const praefectMain = join(repoRoot, "dist/praefect/main.js");

export interface PraefectDatabase {
  host: string;
  port: number;
  user: string;
  password: string;
  name: string;
}

export interface PraefectNode {
  storage: string;
  /** host:port of the Gitaly's tcp listener. */
  address: string;
  token: string;
}

export interface PraefectProcessOptions {
  db: PraefectDatabase;
  gitalys: PraefectNode[];
  token: string;
  virtualStorage?: string;
  /** Extra TOML appended to the config (e.g. a [failover] table). */
  extraToml?: string;
}

export interface CliResult {
  code: number | null;
  out: string;
  err: string;
}

export interface PraefectProcess {
  readonly dir: string;
  readonly configPath: string;
  /** host:port of the tcp listener. */
  readonly address: string;
  readonly metricsUrl: string;
  readonly logFile: string;
  proc: ManagedProcess;
  /** A grpc-js channel to the listener that signs every call with `token` (default: the configured one). */
  channel(token?: string): grpc.Client;
  /** Runs `praefect -config <this config> ...args` to completion. */
  cli(args: string[]): Promise<CliResult>;
  log(): string;
  /** SIGTERM (then SIGKILL after the grace period), and removes the temp dir. */
  stop(): Promise<void>;
  /** SIGKILL: no graceful shutdown, nothing released; the temp dir stays until stop(). */
  kill(): Promise<void>;
}

const q = (s: string) => JSON.stringify(s);

/** Runs the praefect program with `args` and collects its output. */
export function runPraefect(args: string[], env: NodeJS.ProcessEnv = {}): Promise<CliResult> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [praefectMain, ...args], {
      env: { ...process.env, ...env },
      stdio: ["ignore", "pipe", "pipe"],
    });
    let out = "";
    let err = "";
    child.stdout.on("data", (d: Buffer) => {
      out += d.toString();
    });
    child.stderr.on("data", (d: Buffer) => {
      err += d.toString();
    });
    child.once("error", reject);
    child.once("close", (code) => resolve({ code, out, err }));
  });
}

export async function startPraefect(options: PraefectProcessOptions): Promise<PraefectProcess> {
  const dir = mkdtempSync(join(tmpdir(), "praefect-proc-"));
  const port = await freePort();
  const metricsPort = await freePort();
  const vs = options.virtualStorage ?? "default";
  const { db } = options;
  const configPath = join(dir, "config.toml");
  writeFileSync(
    configPath,
    [
      `listen_addr = ${q(`127.0.0.1:${port}`)}`,
      `prometheus_listen_addr = ${q(`127.0.0.1:${metricsPort}`)}`,
      `graceful_stop_timeout = "5s"`,
      "",
      "[auth]",
      `token = ${q(options.token)}`,
      "",
      "[logging]",
      `format = "json"`,
      `level = "info"`,
      "",
      "[database]",
      `host = ${q(db.host)}`,
      `port = ${db.port}`,
      `user = ${q(db.user)}`,
      `password = ${q(db.password)}`,
      `dbname = ${q(db.name)}`,
      `sslmode = "disable"`,
      "",
      "[[virtual_storage]]",
      `name = ${q(vs)}`,
      ...options.gitalys.flatMap((n) => [
        "",
        "[[virtual_storage.node]]",
        `storage = ${q(n.storage)}`,
        `address = ${q(`tcp://${n.address}`)}`,
        `token = ${q(n.token)}`,
      ]),
      "",
      options.extraToml ?? "",
    ].join("\n"),
  );

  const logFile = join(dir, "praefect.log");
  const proc = startProcess(process.execPath, [praefectMain, "-config", configPath, "serve"], {
    logFile,
    env: { ...process.env, PRAEFECT_AUTO_MIGRATE: "1" },
  });
  const address = `127.0.0.1:${port}`;
  const log = () => {
    try {
      return readFileSync(logFile, "utf8");
    } catch {
      return "";
    }
  };
  const channels: grpc.Client[] = [];
  const channel = (token = options.token) => {
    const c = new grpc.Client(address, grpc.credentials.createInsecure(), {
      interceptors: token ? [v2AuthInterceptor(token)] : [],
      "grpc.initial_reconnect_backoff_ms": 50,
      "grpc.max_reconnect_backoff_ms": 500,
    });
    channels.push(c);
    return c;
  };
  const closeChannels = () => {
    for (const c of channels.splice(0)) c.close();
  };
  const stop = async () => {
    closeChannels();
    await proc.stop("SIGTERM", 15_000);
    rmSync(dir, { recursive: true, force: true });
  };
  try {
    const health = createClient(Health, channel(""));
    await waitFor(
      "praefect to serve",
      async () => {
        if (proc.child.exitCode !== null) {
          throw new Error(`praefect exited with ${proc.child.exitCode}:\n${log().slice(-3000)}`);
        }
        const res = await health.check({ service: "" }, { deadline: Date.now() + 1000 });
        return res.status === HealthCheckResponse_ServingStatus.SERVING;
      },
      { timeoutMs: 30_000, intervalMs: 50 },
    );
  } catch (err) {
    await stop();
    throw err;
  }

  return {
    dir,
    configPath,
    address,
    metricsUrl: `http://127.0.0.1:${metricsPort}/metrics`,
    logFile,
    proc,
    channel,
    cli: (args) => runPraefect(["-config", configPath, ...args]),
    log,
    stop,
    async kill() {
      closeChannels();
      await proc.stop("SIGKILL");
    },
  };
}
