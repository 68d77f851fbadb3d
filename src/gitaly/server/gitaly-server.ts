// Assembles a Gitaly node: listeners (tcp, tls, unix) feeding one grpc-js server
// through listenmux, the interceptor chain (observability -> auth -> limiter), the
// services, the metrics endpoint, live reload of token, transitioning flag and TLS
// material, and a graceful drain on shutdown.
import { mkdir, readFile, rm } from "node:fs/promises";
import { createServer as createNetServer, type Server as NetServer, type Socket } from "node:net";
import { dirname } from "node:path";
import type { Duplex } from "node:stream";
import { createServer as createTlsServer, type TLSSocket, type Server as TlsServer } from "node:tls";
import * as grpc from "@grpc/grpc-js";
import { Counter, type Registry } from "prom-client";
import { BlobService } from "../../gen/blob_pb.js";
import { CommitService } from "../../gen/commit_pb.js";
import { Health } from "../../gen/grpc/health/v1/health_pb.js";
import { RefService } from "../../gen/ref_pb.js";
import { RepositoryService } from "../../gen/repository_pb.js";
import { ServerService } from "../../gen/server_pb.js";
import { SmartHTTPService } from "../../gen/smarthttp_pb.js";
import { SSHService } from "../../gen/ssh_pb.js";
import { parseListenAddress } from "../../shared/config/listen-address.js";
import { type FileWatcher, watchFiles } from "../../shared/file-watch.js";
import { observabilityInterceptor } from "../../shared/grpc/observability.js";
import { addService } from "../../shared/grpc/service.js";
import type { Logger } from "../../shared/logging.js";
import { createRegistry, grpcServerMetrics, type MetricsServer, serveMetrics } from "../../shared/metrics.js";
import { Authenticator, authInterceptor, tokenGeneration } from "../auth/authenticator.js";
import { loadGitalyConfigFile } from "../config/load.js";
import type { GitalyConfig } from "../config/schema.js";
import { CatfileCache } from "../git/catfile.js";
import { GitCommandFactory } from "../git/command.js";
import { startNodeHooks } from "../hooks/internal-server.js";
import { ConcurrencyLimiter } from "../limiter/concurrency-limiter.js";
import { limiterInterceptor, targetRepositoryKey } from "../limiter/interceptor.js";
import { blobService } from "../service/blob/blob-service.js";
import { commitService } from "../service/commit/commit-service.js";
import { HealthState, healthService } from "../service/health/health-service.js";
import { refService } from "../service/ref/ref-service.js";
import { repositoryService } from "../service/repository/repository-service.js";
import { serverService } from "../service/server/server-service.js";
import { smartHttpService } from "../service/smarthttp/smarthttp-service.js";
import { sshService } from "../service/ssh/ssh-service.js";
import { StorageLocator } from "../storage/locator.js";
import { ensureStorageMetadata, readFilesystemId } from "../storage/metadata.js";
import { listenmux } from "./listenmux.js";

export const SERVER_VERSION = "0.1.0-ts";

export interface GitalyServerOptions {
  config: GitalyConfig;
  /** The config file, watched for changes to [auth] transitioning. */
  configPath?: string;
  logger: Logger;
  registry?: Registry;
}

export interface GitalyServer {
  readonly addresses: { tcp?: string; tls?: string; unix?: string; metrics?: string };
  readonly registry: Registry;
  readonly health: HealthState;
  /** Re-reads the token file, the config's [auth] and the TLS files now (what SIGHUP does). */
  reload(): Promise<void>;
  /** Stops accepting, drains in-flight calls up to graceful_restart_timeout, then stops. */
  shutdown(): Promise<void>;
}

async function readToken(config: GitalyConfig): Promise<string> {
  if (config.auth.token_file) return (await readFile(config.auth.token_file, "utf8")).trim();
  return config.auth.token;
}

function listen(server: NetServer | TlsServer, address: { host: string; port: number } | string): Promise<string> {
  return new Promise((resolve, reject) => {
    server.once("error", reject);
    const done = () => {
      server.off("error", reject);
      const a = server.address();
      resolve(
        typeof a === "string" ? a : a ? `${a.address.includes(":") ? `[${a.address}]` : a.address}:${a.port}` : "",
      );
    };
    if (typeof address === "string") server.listen(address, done);
    else server.listen(address.port, address.host, done);
  });
}

/** The gRPC connections handed to grpc-js, so shutdown can wait for them to close. */
class OpenConnections {
  private readonly open = new Set<Duplex>();
  private waiters: (() => void)[] = [];

  get size(): number {
    return this.open.size;
  }

  add(conn: Duplex): void {
    this.open.add(conn);
    conn.once("close", () => {
      this.open.delete(conn);
      if (this.open.size === 0) for (const w of this.waiters.splice(0)) w();
    });
  }

  /** Resolves true once every connection has closed, false if `timeoutMs` passes first. */
  waitForNone(timeoutMs: number): Promise<boolean> {
    if (this.open.size === 0) return Promise.resolve(true);
    return new Promise((resolve) => {
      const timer = setTimeout(() => resolve(false), timeoutMs);
      this.waiters.push(() => {
        clearTimeout(timer);
        resolve(true);
      });
    });
  }
}

export async function startGitalyServer(options: GitalyServerOptions): Promise<GitalyServer> {
  const { logger } = options;
  let config = options.config;
  const registry = options.registry ?? createRegistry();
  const connections = new Counter({
    name: "gitaly_connections_total",
    help: "Total number of connections accepted by this Gitaly process",
    labelNames: ["type"],
    registers: [registry],
  });

  for (const storage of config.storage) await ensureStorageMetadata(storage.path);

  const authenticator = new Authenticator(
    { token: await readToken(config), transitioning: config.auth.transitioning },
    { registry },
  );
  const limiter = new ConcurrencyLimiter({
    limits: config.concurrency.map((c) => ({
      rpc: c.rpc,
      maxConcurrency: c.max_concurrency,
      maxQueueSize: c.max_queue_size,
      maxQueueWaitMs: c.max_queue_wait,
    })),
    registry,
    latencyBuckets: config.prometheus.grpc_latency_buckets,
  });
  const health = new HealthState();
  const grpcMetrics = grpcServerMetrics(registry, config.prometheus.grpc_latency_buckets);

  const server = new grpc.Server({
    interceptors: [
      observabilityInterceptor({
        logger,
        metrics: grpcMetrics,
        quietMethods: new Set(["/grpc.health.v1.Health/Check"]),
      }),
      authInterceptor(authenticator),
      limiterInterceptor(
        limiter,
        targetRepositoryKey([RepositoryService, SSHService, SmartHTTPService, RefService, CommitService, BlobService]),
      ),
    ],
    "grpc.max_receive_message_length": 16 * 1024 * 1024,
    "grpc.max_send_message_length": 16 * 1024 * 1024,
  });

  const locator = new StorageLocator(config.storage);
  const git = new GitCommandFactory({ extraConfig: config.git.config });
  const catfile = new CatfileCache(git, { maxEntries: config.git.catfile_cache_size });
  // The internal socket (HookService only, its own token) and the hook scripts git runs.
  const nodeHooks = await startNodeHooks({
    config,
    locator,
    logger,
    interceptors: [observabilityInterceptor({ logger, metrics: grpcMetrics })],
  });
  const deps = { locator, git, catfile, logger, config, hooks: nodeHooks.environment, registry };
  addService(
    server,
    Health,
    healthService(
      health,
      new Set([
        "gitaly.ServerService",
        "gitaly.RepositoryService",
        "gitaly.SSHService",
        "gitaly.SmartHTTPService",
        "gitaly.RefService",
        "gitaly.CommitService",
        "gitaly.BlobService",
      ]),
    ),
  );
  addService(
    server,
    ServerService,
    serverService({
      storages: config.storage,
      serverVersion: SERVER_VERSION,
      gitVersion: () => git.version(),
      filesystemId: (p) => readFilesystemId(p),
      logger,
    }),
  );
  addService(server, RepositoryService, repositoryService(deps));
  addService(server, SSHService, sshService(deps));
  addService(server, SmartHTTPService, smartHttpService(deps));
  addService(server, RefService, refService({ ...deps, transactions: nodeHooks.transactions }));
  addService(server, CommitService, commitService(deps));
  addService(server, BlobService, blobService(deps));

  const injector = server.createConnectionInjector(grpc.ServerCredentials.createInsecure());
  const openConnections = new OpenConnections();
  const accept = (type: "tcp" | "tls" | "unix") => (socket: Socket | TLSSocket) => {
    connections.inc({ type });
    socket.on("error", (err) => logger.debug({ err, type }, "connection error"));
    listenmux(socket, {
      onGrpcConnection: (duplex) => {
        openConnections.add(duplex);
        injector.injectConnection(duplex);
      },
      logger,
    });
  };

  const listeners: (NetServer | TlsServer)[] = [];
  const addresses: GitalyServer["addresses"] = {};
  if (config.listen_addr) {
    const tcp = createNetServer({ noDelay: true }, accept("tcp"));
    addresses.tcp = await listen(tcp, parseListenAddress(config.listen_addr));
    listeners.push(tcp);
  }
  if (config.socket_path) {
    await mkdir(dirname(config.socket_path), { recursive: true });
    await rm(config.socket_path, { force: true });
    const unix = createNetServer(accept("unix"));
    addresses.unix = await listen(unix, config.socket_path);
    listeners.push(unix);
  }
  let tls: TlsServer | undefined;
  const loadTlsContext = async () => {
    if (!config.tls.certificate_path || !config.tls.key_path) throw new Error("tls_listen_addr requires [tls]");
    const [cert, key] = await Promise.all([readFile(config.tls.certificate_path), readFile(config.tls.key_path)]);
    return { cert, key };
  };
  /** The key pair new handshakes get, to tell a changed one from a re-read of the same. */
  let tlsMaterial: { cert: Buffer; key: Buffer } | undefined;
  if (config.tls_listen_addr) {
    tlsMaterial = await loadTlsContext();
    tls = createTlsServer({ ...tlsMaterial, ALPNProtocols: ["h2"] }, accept("tls"));
    addresses.tls = await listen(tls, parseListenAddress(config.tls_listen_addr));
    listeners.push(tls);
  }
  let metricsServer: MetricsServer | undefined;
  if (config.prometheus_listen_addr) {
    const a = parseListenAddress(config.prometheus_listen_addr);
    metricsServer = await serveMetrics(registry, a.host, a.port);
    addresses.metrics = `${a.host}:${metricsServer.port}`;
  }

  // Live reload: the token file, [auth] in the config file, and the TLS key pair.
  const reloadOnce = async () => {
    const changed: string[] = [];
    try {
      if (options.configPath)
        config = { ...config, auth: (await loadGitalyConfigFile(options.configPath)).config.auth };
      const token = await readToken(config);
      const current = authenticator.settings;
      if (token !== current.token || config.auth.transitioning !== current.transitioning) {
        authenticator.update({ token, transitioning: config.auth.transitioning });
        changed.push("auth");
      }
      if (tls) {
        const next = await loadTlsContext();
        if (!tlsMaterial || !next.cert.equals(tlsMaterial.cert) || !next.key.equals(tlsMaterial.key)) {
          // Only new handshakes see the new certificate; live connections keep theirs.
          // Throws on a key that does not match the certificate (a swap half done):
          // the previous pair stays until the other file arrives.
          tls.setSecureContext(next);
          tlsMaterial = next;
          changed.push("tls");
        }
      }
      if (changed.length > 0) {
        logger.info(
          { changed, transitioning: config.auth.transitioning, generation: tokenGeneration(token) },
          "reloaded auth and TLS settings",
        );
      }
    } catch (err) {
      // Keep serving with the previous settings; a half-written file is retried on the next change.
      logger.error({ err, changed }, "reload failed; what is not listed in changed keeps its previous settings");
    }
  };
  // Reloads never overlap: one that finished last with files it read first would
  // leave stale settings in place. A request during a reload schedules one more.
  let reloading: Promise<void> | null = null;
  let reloadAgain = false;
  const reload = (): Promise<void> => {
    if (reloading) {
      reloadAgain = true;
      return reloading;
    }
    reloading = (async () => {
      do {
        reloadAgain = false;
        await reloadOnce();
      } while (reloadAgain);
    })().finally(() => {
      reloading = null;
    });
    return reloading;
  };
  const watched = [config.auth.token_file, options.configPath, config.tls.certificate_path, config.tls.key_path].filter(
    (p): p is string => !!p,
  );
  const watcher: FileWatcher | undefined =
    watched.length > 0 ? watchFiles(watched, () => reload(), { intervalMs: 1000 }) : undefined;
  // The files were first read above, before the watcher took its baseline; a change in
  // between would otherwise go unnoticed until the next one. Reload once past the baseline.
  if (watcher) void watcher.check().then(() => reload());

  logger.info({ addresses, storages: config.storage.map((s) => s.name) }, "gitaly started");

  return {
    addresses,
    registry,
    health,
    reload: async () => {
      logger.info("reload requested");
      await reload();
    },
    async shutdown() {
      health.setServing(false);
      watcher?.close();
      for (const l of listeners) l.close();
      const timeoutMs = config.graceful_restart_timeout;
      // GOAWAY on every connection: no new calls, the ones in flight go on, and each
      // connection closes once its last stream is done and flushed. grpc-js's
      // tryShutdown does not wait for injected connections, so we watch them close.
      injector.drain(timeoutMs);
      if (!(await openConnections.waitForNone(timeoutMs))) {
        logger.warn(
          { timeoutMs, open: openConnections.size },
          "graceful shutdown timed out; cancelling remaining calls",
        );
      }
      server.forceShutdown();
      injector.destroy();
      await catfile.close();
      // After the drain: hooks of pushes still in flight needed the internal socket.
      await nodeHooks.close();
      await metricsServer?.close();
      if (config.socket_path) await rm(config.socket_path, { force: true });
    },
  };
}
