// Starts real Gitaly processes (the built dist/gitaly/main.js) for integration
// tests: a temp dir with storages, a config.toml, a token file, optional TLS, free
// loopback ports. Stops them (SIGTERM, then SIGKILL) even when a test fails.
import { chmodSync, mkdirSync, mkdtempSync, readFileSync, renameSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import * as grpc from "@grpc/grpc-js";
import { Health, HealthCheckResponse_ServingStatus } from "../../src/gen/grpc/health/v1/health_pb.js";
import { v2AuthInterceptor } from "../../src/shared/auth/v2-token.js";
import { createClient } from "../../src/shared/grpc/service.js";
import { freePort, waitFor } from "../../src/shared/net.js";
import { type ManagedProcess, startProcess } from "../../src/shared/process.js";
import type { CertificateAuthority } from "../../src/shared/tls/certificates.js";
import { issueCertificate } from "../../src/shared/tls/certificates.js";

export const repoRoot = resolve(import.meta.dirname, "../..");
export const gitalyMain = join(repoRoot, "dist/gitaly/main.js");

export interface GitalyProcessOptions {
  storages?: string[];
  token?: string;
  transitioning?: boolean;
  /** A CA to issue the TLS listener's certificate from; enables tls_listen_addr. */
  tlsCa?: CertificateAuthority;
  unixSocket?: boolean;
  /** Extra TOML appended to the config. */
  extraToml?: string;
  /**
   * Run in this directory (storages, config, logs) instead of a fresh temp one: restarts a node
   * killed earlier on its own data. stop() still removes it.
   */
  dir?: string;
  /** Listen on this port (default: a free one); with `dir`, a restarted node keeps its address. */
  port?: number;
}

export interface GitalyProcess {
  readonly dir: string;
  readonly configPath: string;
  readonly tokenFile: string;
  readonly address: string;
  readonly tlsAddress?: string;
  /** The TLS listener's certificate and key files (set with tlsCa); replace them to rotate. */
  readonly tlsCertFile?: string;
  readonly tlsKeyFile?: string;
  readonly socketPath?: string;
  readonly metricsUrl: string;
  readonly storages: { name: string; path: string }[];
  readonly logFile: string;
  proc: ManagedProcess;
  /** A grpc-js channel to the tcp listener that signs every call with `token`. */
  channel(token?: string): grpc.Client;
  metrics(): Promise<string>;
  writeConfig(changes?: { transitioning?: boolean }): void;
  stop(): Promise<void>;
}

function tomlString(s: string): string {
  return JSON.stringify(s);
}

export async function startGitaly(options: GitalyProcessOptions = {}): Promise<GitalyProcess> {
  const dir = options.dir ?? mkdtempSync(join(tmpdir(), "gitaly-proc-"));
  mkdirSync(dir, { recursive: true });
  const storages = (options.storages ?? ["default"]).map((name) => {
    const path = join(dir, "storages", name);
    mkdirSync(path, { recursive: true });
    return { name, path };
  });
  const tokenFile = join(dir, "token");
  writeFileSync(tokenFile, options.token ?? "", { mode: 0o600 });
  chmodSync(tokenFile, 0o600);
  const port = options.port ?? (await freePort());
  const metricsPort = await freePort();
  const tlsPort = options.tlsCa ? await freePort() : undefined;
  const socketPath = options.unixSocket ? join(dir, "gitaly.socket") : undefined;
  let tlsFiles: { cert: string; key: string } | undefined;
  if (options.tlsCa) {
    const leaf = await issueCertificate(options.tlsCa, { commonName: "gitaly", hosts: ["127.0.0.1", "localhost"] });
    tlsFiles = { cert: join(dir, "tls.crt"), key: join(dir, "tls.key") };
    writeFileSync(tlsFiles.cert, leaf.certificate);
    writeFileSync(tlsFiles.key, leaf.privateKey, { mode: 0o600 });
  }
  const configPath = join(dir, "config.toml");
  let transitioning = options.transitioning ?? false;
  const writeConfig = () => {
    const lines = [
      `listen_addr = ${tomlString(`127.0.0.1:${port}`)}`,
      `prometheus_listen_addr = ${tomlString(`127.0.0.1:${metricsPort}`)}`,
      `runtime_dir = ${tomlString(join(dir, "run"))}`,
      `graceful_restart_timeout = "10s"`,
      ...(socketPath ? [`socket_path = ${tomlString(socketPath)}`] : []),
      ...(tlsPort ? [`tls_listen_addr = ${tomlString(`127.0.0.1:${tlsPort}`)}`] : []),
      "",
      "[auth]",
      `token_file = ${tomlString(tokenFile)}`,
      `transitioning = ${transitioning}`,
      "",
      "[logging]",
      `format = "json"`,
      `level = "info"`,
      ...(tlsFiles
        ? ["", "[tls]", `certificate_path = ${tomlString(tlsFiles.cert)}`, `key_path = ${tomlString(tlsFiles.key)}`]
        : []),
      ...storages.flatMap((s) => ["", "[[storage]]", `name = ${tomlString(s.name)}`, `path = ${tomlString(s.path)}`]),
      "",
      options.extraToml ?? "",
    ];
    // Write-then-rename, as a config management tool (or a kubelet) would.
    writeFileSync(`${configPath}.tmp`, lines.join("\n"));
    renameSync(`${configPath}.tmp`, configPath);
  };
  writeConfig();

  const logFile = join(dir, "gitaly.log");
  const proc = startProcess(process.execPath, [gitalyMain, "serve", configPath], { logFile });
  const address = `127.0.0.1:${port}`;
  const channels: grpc.Client[] = [];
  const channel = (token = options.token ?? "") => {
    const c = new grpc.Client(address, grpc.credentials.createInsecure(), {
      interceptors: token ? [v2AuthInterceptor(token)] : [],
    });
    channels.push(c);
    return c;
  };
  const stop = async () => {
    for (const c of channels) c.close();
    await proc.stop("SIGTERM", 15_000);
    rmSync(dir, { recursive: true, force: true });
  };
  try {
    // Probe with a short reconnect backoff: grpc-js's default (1 s, growing) would add
    // whole seconds to every start whose first probe comes before the listener is up.
    const probe = new grpc.Client(address, grpc.credentials.createInsecure(), {
      "grpc.initial_reconnect_backoff_ms": 20,
      "grpc.max_reconnect_backoff_ms": 100,
    });
    channels.push(probe);
    const health = createClient(Health, probe);
    await waitFor(
      "gitaly to serve",
      async () => {
        if (proc.child.exitCode !== null) {
          throw new Error(`gitaly exited with ${proc.child.exitCode}:\n${readFileSync(logFile, "utf8").slice(-3000)}`);
        }
        const res = await health.check({ service: "" }, { deadline: Date.now() + 1000 });
        return res.status === HealthCheckResponse_ServingStatus.SERVING;
      },
      { timeoutMs: 20_000, intervalMs: 25 },
    );
  } catch (err) {
    await stop();
    throw err;
  }

  return {
    dir,
    configPath,
    tokenFile,
    address,
    ...(tlsPort ? { tlsAddress: `127.0.0.1:${tlsPort}` } : {}),
    ...(tlsFiles ? { tlsCertFile: tlsFiles.cert, tlsKeyFile: tlsFiles.key } : {}),
    ...(socketPath ? { socketPath } : {}),
    metricsUrl: `http://127.0.0.1:${metricsPort}/metrics`,
    storages,
    logFile,
    proc,
    channel,
    async metrics() {
      return (await fetch(`http://127.0.0.1:${metricsPort}/metrics`)).text();
    },
    writeConfig(changes = {}) {
      if (changes.transitioning !== undefined) transitioning = changes.transitioning;
      writeConfig();
    },
    stop,
  };
}

/** Reads one sample from Prometheus text output, e.g. metricValue(text, 'gitaly_authentications_total', {status: "ok"}). */
export function metricValue(text: string, name: string, labels: Record<string, string> = {}): number {
  let total = 0;
  let found = false;
  for (const line of text.split("\n")) {
    if (!line.startsWith(name)) continue;
    const m = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{(.*)\})? ([0-9.eE+-]+|NaN|\+Inf)$/.exec(line);
    if (!m || m[1] !== name) continue;
    const got = Object.fromEntries(
      [...(m[3] ?? "").matchAll(/([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"/g)].map((x) => [x[1], x[2]]),
    );
    if (Object.entries(labels).every(([k, v]) => got[k] === v)) {
      total += Number(m[4]);
      found = true;
    }
  }
  return found ? total : 0;
}
