// Assembles Praefect's gRPC front: listeners (tcp, tls, unix) feeding one grpc-js server through
// listenmux, so backchannel clients (Workhorse, the HTTP gateway) can bring sidechannels; the
// interceptor chain (observability -> method types -> auth); the routed services as byte-level
// proxies; the services Praefect answers itself; and the read cache kept fresh by LISTEN/NOTIFY.
// The node connections, the health loop, replication and the metrics endpoint belong to the
// caller (main.ts), which passes them in.
import { mkdir, rm } from "node:fs/promises";
import { createServer as createNetServer, type Server as NetServer, type Socket } from "node:net";
import { dirname } from "node:path";
import { createServer as createTlsServer, type Server as TlsServer } from "node:tls";
import type { DescService } from "@bufbuild/protobuf";
import * as grpc from "@grpc/grpc-js";
import type pg from "pg";
import type { Registry } from "prom-client";
import { Health } from "../../gen/grpc/health/v1/health_pb.js";
import { PraefectInfoService } from "../../gen/praefect_pb.js";
import { RepositoryService } from "../../gen/repository_pb.js";
import { ServerService } from "../../gen/server_pb.js";
import { Authenticator, type AuthSettings, authInterceptor, tokenGeneration } from "../../gitaly/auth/authenticator.js";
import { createListenmux } from "../../gitaly/server/listenmux.js";
import { HealthState, healthService } from "../../gitaly/service/health/health-service.js";
import { parseListenAddress } from "../../shared/config/listen-address.js";
import { observabilityInterceptor } from "../../shared/grpc/observability.js";
import { addService, grpcMethodDefinition } from "../../shared/grpc/service.js";
import type { Logger } from "../../shared/logging.js";
import { ReloadableKeyPair } from "../../shared/tls/serving-key-pair.js";
import { NotificationListener, REPOSITORY_CHANGE_CHANNELS, UpToDateCache } from "../datastore/notifications.js";
import { ReplicationQueue } from "../datastore/queue.js";
import { RepositoryStore } from "../datastore/repositories.js";
import { electionVote, type FailoverVoteSettings } from "../nodes/election-vote.js";
import type { NodeManager } from "../nodes/types.js";
import { Coordinator } from "../router/coordinator.js";
import { buildMethodTable, PROXIED_SERVICES, type ProxiedMethod, proxiedMethod } from "../router/method-table.js";
import { PerRepositoryRouter, type Random } from "../router/router.js";
import { praefectInfoService } from "./info-service.js";
import { methodTypeInterceptor, routerMetrics, sharedGrpcServerMetrics } from "./metrics.js";
import { proxiedServiceDefinition } from "./proxy-handler.js";
import { removeRepositoryHandler, repositoryExistsHandler } from "./repository-handlers.js";
import { praefectServerService, type ReadinessCheck } from "./server-service.js";

/** The part of Praefect's configuration the router uses (upstream key names). */
export interface PraefectRouterConfig {
  listen_addr?: string;
  tls_listen_addr?: string;
  socket_path?: string;
  /** The resolved client token (token_file already read); "" disables authentication. */
  auth: AuthSettings;
  tls?: { certificate_path?: string; key_path?: string };
  virtual_storage: readonly {
    name: string;
    /** 0 or absent: every node holds every repository (no assignments recorded). */
    default_replication_factor?: number;
    node: readonly { storage: string }[];
  }[];
  failover?: FailoverVoteSettings & { election_strategy?: string };
  /** Milliseconds in-flight calls get on shutdown before they are cancelled (upstream default 1m). */
  graceful_stop_timeout?: number;
  prometheus?: { grpc_latency_buckets?: number[] };
}

export interface PraefectRouterOptions {
  config: PraefectRouterConfig;
  logger: Logger;
  registry: Registry;
  nodes: NodeManager;
  /** The pooled connection for queries. */
  db: pg.Pool;
  /**
   * A direct (session-pooled) connection for LISTEN/NOTIFY. Without it the read cache stays off
   * and every routed read queries the database.
   */
  notificationsConnection?: pg.ClientConfig | string;
  /** This Praefect's name (`<hostname>:<listen address>`), for the logs. */
  praefectName: string;
  /** Checks ReadinessCheck runs (the `praefect check` set, supplied by main). */
  readinessChecks?: readonly ReadinessCheck[];
  /** Routing randomness, replaceable in tests. */
  random?: Random;
}

export interface PraefectRouter {
  readonly addresses: { tcp?: string; tls?: string; unix?: string };
  /** The up-to-date replica cache, with its statistics (queries, hits, misses). */
  readonly cache: UpToDateCache;
  /** Resolves once the notification listener is listening (never, without notificationsConnection). */
  readonly notificationsConnected: Promise<void>;
  /** Swaps the client token and transitioning flag; the next call sees them. */
  reload(auth: AuthSettings): void;
  /**
   * Re-reads [tls] certificate_path and key_path: a changed pair that passes the checks goes to new
   * handshakes (live connections keep theirs) and is logged with its serial and notAfter; one that
   * does not is logged as an error and the previous pair stays. Never throws; without a TLS
   * listener it does nothing.
   */
  reloadTls(): Promise<void>;
  /** Stops accepting, drains in-flight calls up to graceful_stop_timeout, then stops. */
  shutdown(): Promise<void>;
}

const DEFAULT_GRACEFUL_STOP_TIMEOUT_MS = 60_000;
const MAX_MESSAGE_BYTES = 16 * 1024 * 1024;

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
    else server.listen(address.port, address.host === "" ? undefined : address.host, done);
  });
}

/** What the logs say of a serving certificate: which one and until when, never the key. */
function certificateFields(keyPair: ReloadableKeyPair) {
  const { serialNumber, notAfter, subject } = keyPair.certificate;
  return {
    certificate_path: keyPair.files.certificatePath,
    serial: serialNumber,
    not_after: notAfter.toISOString(),
    subject,
  };
}

function checkConfig(config: PraefectRouterConfig): void {
  const strategy = config.failover?.election_strategy;
  if (strategy !== undefined && strategy !== "" && strategy !== "per_repository") {
    throw new Error(`election strategy "${strategy}" is not supported: only per_repository is`);
  }
  if (!config.listen_addr && !config.tls_listen_addr && !config.socket_path) {
    throw new Error("no listen address or socket path configured");
  }
}

export async function startPraefectRouter(options: PraefectRouterOptions): Promise<PraefectRouter> {
  const { config, logger, registry, nodes } = options;
  checkConfig(config);
  const configuredStorages = Object.fromEntries(
    config.virtual_storage.map((vs) => [vs.name, vs.node.map((n) => n.storage)]),
  );
  const replicationFactors = Object.fromEntries(
    config.virtual_storage.map((vs) => [vs.name, vs.default_replication_factor ?? 0]),
  );
  const store = new RepositoryStore(options.db, configuredStorages, { electionVote: electionVote(config.failover) });
  const queue = new ReplicationQueue(options.db);
  const cache = new UpToDateCache(store, undefined, (err) =>
    logger.error({ err }, "unparsable change notification: read cache disabled until the listener reconnects"),
  );
  let listener: NotificationListener | undefined;
  if (options.notificationsConnection !== undefined) {
    listener = new NotificationListener({
      connection: options.notificationsConnection,
      channels: REPOSITORY_CHANGE_CHANNELS,
      handlers: {
        onNotification: (channel, payload) => cache.onNotification(channel, payload),
        onConnected: () => {
          cache.onConnected();
          logger.info("listening for repository changes: read cache enabled");
        },
        onDisconnected: (err) => {
          cache.onDisconnected();
          logger.warn({ err }, "change notifications lost: read cache disabled until reconnected");
        },
      },
    });
    listener.start();
  }
  const invalidate = (virtualStorage: string, relativePath: string) => cache.invalidate(virtualStorage, [relativePath]);

  const metrics = routerMetrics(registry);
  const router = new PerRepositoryRouter({
    nodes,
    store,
    upToDate: cache,
    replicationFactors,
    ...(options.random ? { random: options.random } : {}),
  });
  const coordinator = new Coordinator({
    router,
    nodes,
    store,
    queue,
    invalidate,
    replicationFactors,
    logger,
    onRead: (vs, storage) => metrics.readDistribution.inc({ virtual_storage: vs, storage }),
  });
  const methods = buildMethodTable(PROXIED_SERVICES);
  // The locally answered RPCs count by their operation type too, as upstream's interceptor does.
  const methodTypes = new Map<string, Pick<ProxiedMethod, "routing">>(methods);
  for (const local of [RepositoryService.method.repositoryExists, RepositoryService.method.removeRepository]) {
    const entry = proxiedMethod(local);
    methodTypes.set(entry.path, entry);
  }

  const authenticator = new Authenticator(config.auth, { registry });
  const server = new grpc.Server({
    interceptors: [
      observabilityInterceptor({
        logger,
        metrics: sharedGrpcServerMetrics(registry, config.prometheus?.grpc_latency_buckets),
        quietMethods: new Set(["/grpc.health.v1.Health/Check"]),
      }),
      methodTypeInterceptor(methodTypes, metrics.methodTypes),
      authInterceptor(authenticator),
    ],
    "grpc.max_receive_message_length": MAX_MESSAGE_BYTES,
    "grpc.max_send_message_length": MAX_MESSAGE_BYTES,
  });

  const health = new HealthState();
  addService(server, Health, healthService(health, new Set()));
  addService(server, ServerService, praefectServerService({ nodes, logger, checks: options.readinessChecks ?? [] }));
  addService(server, PraefectInfoService, praefectInfoService({ store, nodes }));
  const proxyDeps = { coordinator, logger };
  for (const service of PROXIED_SERVICES) {
    const entries = [...methods.values()].filter((m) => m.method.parent === service);
    const { definition, implementation } = proxiedServiceDefinition(entries, proxyDeps);
    if (service === (RepositoryService as DescService)) {
      const repoDeps = { store, nodes, logger, invalidate };
      definition.repositoryExists = grpcMethodDefinition(RepositoryService.method.repositoryExists);
      implementation.repositoryExists = repositoryExistsHandler(repoDeps) as grpc.UntypedHandleCall;
      definition.removeRepository = grpcMethodDefinition(RepositoryService.method.removeRepository);
      implementation.removeRepository = removeRepositoryHandler(repoDeps) as grpc.UntypedHandleCall;
    }
    if (Object.keys(definition).length > 0) server.addService(definition, implementation);
  }

  const injector = server.createConnectionInjector(grpc.ServerCredentials.createInsecure());
  const mux = createListenmux({
    onGrpcConnection: (connection) => injector.injectConnection(connection),
    onRejected: (socket, reason) =>
      logger.debug({ err: reason, remoteAddress: socket.remoteAddress }, "connection dropped before the handshake"),
  });
  const accept = (type: "tcp" | "tls" | "unix") => (socket: Socket) => {
    metrics.connections.inc({ type });
    mux.accept(socket);
  };

  const listeners: (NetServer | TlsServer)[] = [];
  const addresses: PraefectRouter["addresses"] = {};
  let tls: { server: TlsServer; keyPair: ReloadableKeyPair } | undefined;
  const closeAll = () => {
    for (const l of listeners) l.close();
  };
  try {
    if (config.listen_addr) {
      const tcp = createNetServer({ noDelay: true }, accept("tcp"));
      listeners.push(tcp);
      addresses.tcp = await listen(tcp, parseListenAddress(config.listen_addr));
    }
    if (config.socket_path) {
      await mkdir(dirname(config.socket_path), { recursive: true });
      await rm(config.socket_path, { force: true });
      const unix = createNetServer(accept("unix"));
      listeners.push(unix);
      addresses.unix = await listen(unix, config.socket_path);
    }
    if (config.tls_listen_addr) {
      if (!config.tls?.certificate_path || !config.tls.key_path) throw new Error("tls_listen_addr requires [tls]");
      const keyPair = await ReloadableKeyPair.load({
        certificatePath: config.tls.certificate_path,
        keyPath: config.tls.key_path,
      });
      const server = createTlsServer({ ...keyPair.secureContextOptions, ALPNProtocols: ["h2"] }, accept("tls"));
      listeners.push(server);
      tls = { server, keyPair };
      addresses.tls = await listen(server, parseListenAddress(config.tls_listen_addr));
      logger.info(certificateFields(keyPair), "serving TLS certificate");
    }
  } catch (err) {
    closeAll();
    await listener?.stop();
    throw err;
  }

  logger.info(
    {
      addresses,
      praefect_name: options.praefectName,
      virtual_storages: Object.keys(configuredStorages),
      routed_methods: methods.size,
      read_cache: listener ? "notifications" : "off",
    },
    "praefect router started",
  );

  return {
    addresses,
    cache,
    notificationsConnected: listener ? listener.connected : new Promise<void>(() => undefined),
    reload(auth) {
      const current = authenticator.settings;
      if (auth.token === current.token && auth.transitioning === current.transitioning) return;
      authenticator.update(auth);
      logger.info(
        { transitioning: auth.transitioning, generation: tokenGeneration(auth.token) },
        "reloaded auth settings",
      );
    },
    async reloadTls() {
      if (!tls) return;
      const { server, keyPair } = tls;
      try {
        const result = await keyPair.reload(server);
        if (!result.swapped) return;
        logger.info(
          {
            ...certificateFields(keyPair),
            previous_serial: result.previous.serialNumber,
            previous_not_after: result.previous.notAfter.toISOString(),
          },
          "reloaded TLS certificate: new connections get it, live ones keep theirs",
        );
      } catch (err) {
        logger.error(
          {
            err: (err as Error).message,
            certificate_path: keyPair.files.certificatePath,
            key_path: keyPair.files.keyPath,
            serial: keyPair.certificate.serialNumber,
          },
          "TLS certificate reload failed; the previous certificate stays in force",
        );
      }
    },
    async shutdown() {
      health.setServing(false);
      closeAll();
      const timeoutMs = config.graceful_stop_timeout ?? DEFAULT_GRACEFUL_STOP_TIMEOUT_MS;
      await new Promise<void>((resolve) => {
        const timer = setTimeout(() => {
          logger.warn({ timeoutMs }, "graceful stop timed out; cancelling remaining calls");
          server.forceShutdown();
          resolve();
        }, timeoutMs);
        server.tryShutdown(() => {
          clearTimeout(timer);
          resolve();
        });
      });
      mux.close();
      injector.destroy();
      await listener?.stop();
      if (config.socket_path) await rm(config.socket_path, { force: true });
    },
  };
}
