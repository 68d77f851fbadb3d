// Praefect's control plane for its Gitaly nodes: one channel per node, a lazily dialled
// backchannel, and the health loop. Every second each node gets a grpc.health.v1 Health/Check
// (1 s deadline; SERVING is healthy). The results become this Praefect's local view at once
// (routing uses it), are recorded in node_status, and the healthy_storages consensus of all
// Praefects is read back (election uses it). With the database down the loop keeps checking and
// routing keeps using the local view; the consensus stays at its last known value.
//
// With [failover] error thresholds configured, errors the router reports count against a node:
// at the threshold it drops out of the local view at once, and its health checks are
// short-circuited to "unhealthy" (upstream's circuit breaker) until the errors age out. That is
// the only way tracked errors reach the election, as upstream: this Praefect records the node
// unhealthy in node_status, one vote in the consensus; it never elects from its own view. What
// thresholds change besides is how votes count (election-vote.ts): each Praefect's latest check,
// so a majority that has seen the node fail fails it over within a health-check round or two
// instead of after the 10 s sighting window.
//
// The token presented to each node can be swapped live (updateTokens): every call started after
// the swap, on the channel, the backchannel or in gitaly-servers metadata, uses the new one.
import type * as grpc from "@grpc/grpc-js";
import type pg from "pg";
import type { Registry } from "prom-client";
import { Health, HealthCheckResponse_ServingStatus } from "../../gen/grpc/health/v1/health_pb.js";
import { tokenGeneration } from "../../gitaly/auth/authenticator.js";
import {
  type BackchannelConnection,
  type BackchannelDialOptions,
  dialBackchannel,
} from "../../shared/grpc/backchannel-client.js";
import { createClient } from "../../shared/grpc/service.js";
import type { Logger } from "../../shared/logging.js";
import { parseNodeAddress } from "../config/node-address.js";
import type { NodeToken } from "../config/reload.js";
import { errorThresholdsConfigured, type PraefectConfig } from "../config/schema.js";
import { type HealthCheckResult, NodeStatusStore } from "../datastore/health.js";
import { createNodeChannel, nodeRootCertificates } from "./channel.js";
import { electionVote } from "./election-vote.js";
import { type ErrorKind, ErrorTracker } from "./error-tracker.js";
import { nodeTokenInfo } from "./token-metrics.js";
import type { GitalyNode, NodeManager } from "./types.js";

export const HEALTH_CHECK_INTERVAL_MS = 1_000;
export const HEALTH_CHECK_TIMEOUT_MS = 1_000;
/** Upstream bounds the node_status update so a slow database cannot make fresh checks look stale. */
const DATABASE_TIMEOUT_MS = 5_000;

export interface NodeManagerOptions {
  config: Pick<PraefectConfig, "virtual_storage" | "failover" | "yamux">;
  db: pg.Pool;
  praefectName: string;
  logger: Logger;
  /** Where gitaly_praefect_node_token_info goes (upstream's per-repository mode exports no other node metric). */
  registry?: Registry;
  /** Extra backchannel dial settings, e.g. `onServerStream` for transaction votes coming back. */
  backchannel?: Omit<BackchannelDialOptions, "maxStreamWindow">;
  /** Test seams; upstream's 1 s defaults otherwise. */
  healthCheckIntervalMs?: number;
  healthCheckTimeoutMs?: number;
  channelOptions?: grpc.ChannelOptions;
  /** The error tracker's clock (tests move time instead of waiting). */
  now?: () => number;
}

/** The NodeManager contract plus what the program and the background workers need. */
export interface PraefectNodeManager extends NodeManager {
  readonly praefectName: string;
  /** The local view of every virtual storage, as the reconciler and verifier take it. */
  healthyNodes(): Record<string, string[]>;
  /** Runs one health-check round now and waits for its database part. */
  checkNow(): Promise<void>;
  /** Whether the last attempt to record health checks or read the consensus failed. */
  readonly databaseReachable: boolean;
  /**
   * Swaps the tokens of the nodes named in `tokens` (matched by virtual storage, storage and
   * address: a node whose address changed keeps its token until a restart builds it anew), all
   * at once: no call can see some nodes swapped and others not. Calls already started keep their
   * token. Returns what changed.
   */
  updateTokens(tokens: readonly NodeToken[]): NodeTokenChange[];
}

export interface NodeTokenChange {
  virtualStorage: string;
  storage: string;
  /** tokenGeneration() of the token before and after: never the token. */
  previousGeneration: string;
  generation: string;
}

class ManagedNode implements GitalyNode {
  readonly channel: grpc.Client;
  private currentToken: string;
  private dialing: Promise<BackchannelConnection> | null = null;
  private connection: BackchannelConnection | null = null;
  private closed = false;

  constructor(
    readonly virtualStorage: string,
    readonly storage: string,
    readonly address: string,
    token: string,
    private readonly dialOptions: BackchannelDialOptions,
    channelOptions: grpc.ChannelOptions | undefined,
  ) {
    this.currentToken = token;
    this.channel = createNodeChannel(address, () => this.currentToken, channelOptions ? { channelOptions } : {});
  }

  get token(): string {
    return this.currentToken;
  }

  setToken(token: string): void {
    this.currentToken = token;
  }

  backchannel(): Promise<BackchannelConnection> {
    if (this.closed) return Promise.reject(new Error(`node ${this.virtualStorage}/${this.storage}: closed`));
    if (this.connection && !this.connection.closed) return Promise.resolve(this.connection);
    if (this.dialing) return this.dialing;
    const { backchannelAddress, tls } = parseNodeAddress(this.address);
    const options = { ...this.dialOptions };
    if (tls && options.ca === undefined) {
      const roots = nodeRootCertificates();
      if (roots) options.ca = roots;
    }
    const dialing = dialBackchannel(backchannelAddress, options).then(
      (conn) => {
        this.dialing = null;
        if (this.closed) {
          void conn.close();
          throw new Error(`node ${this.virtualStorage}/${this.storage}: closed`);
        }
        this.connection = conn;
        return conn;
      },
      (err: unknown) => {
        // The next caller dials again: a node that was down may be back.
        this.dialing = null;
        throw new Error(
          `dialling the backchannel of ${this.virtualStorage}/${this.storage} at ${this.address}: ${(err as Error).message}`,
          { cause: err },
        );
      },
    );
    this.dialing = dialing;
    return dialing;
  }

  async close(): Promise<void> {
    this.closed = true;
    this.channel.close();
    const pending = this.dialing;
    const conn = this.connection;
    this.connection = null;
    if (conn) await conn.close();
    if (pending) await pending.then((c) => c.close()).catch(() => undefined);
  }
}

function trackerKey(virtualStorage: string, storage: string): string {
  return `${virtualStorage}\u0000${storage}`;
}

function withTimeout<T>(promise: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`${what}: timed out after ${ms} ms`)), ms);
  });
  return Promise.race([promise, timeout]).finally(() => clearTimeout(timer));
}

const EMPTY: ReadonlySet<string> = new Set();

export function createNodeManager(options: NodeManagerOptions): PraefectNodeManager {
  const { config, logger, praefectName } = options;
  const log = logger.child({ component: "node_manager" });
  const intervalMs = options.healthCheckIntervalMs ?? HEALTH_CHECK_INTERVAL_MS;
  const timeoutMs = options.healthCheckTimeoutMs ?? HEALTH_CHECK_TIMEOUT_MS;
  const statusStore = new NodeStatusStore(options.db, praefectName, electionVote(config.failover));
  const tracker = errorThresholdsConfigured(config.failover)
    ? new ErrorTracker(
        {
          windowMs: config.failover.error_threshold_window,
          read: config.failover.read_error_threshold_count,
          write: config.failover.write_error_threshold_count,
        },
        options.now,
      )
    : null;

  const dialOptions: BackchannelDialOptions = {
    ...options.backchannel,
    maxStreamWindow: config.yamux.maximum_stream_window_size_bytes,
  };
  const byVirtualStorage = new Map<string, ManagedNode[]>();
  for (const vs of config.virtual_storage) {
    byVirtualStorage.set(
      vs.name,
      vs.node.map((n) => new ManagedNode(vs.name, n.storage, n.address, n.token, dialOptions, options.channelOptions)),
    );
  }
  const allNodes = [...byVirtualStorage.values()].flat();
  const tokenInfo = options.registry ? nodeTokenInfo(options.registry) : null;
  for (const node of allNodes) tokenInfo?.set(node.virtualStorage, node.storage, node.token);

  let localView = new Map<string, ReadonlySet<string>>();
  let consensusView = new Map<string, ReadonlySet<string>>();
  let databaseReachable = true;
  let databaseSync: Promise<void> | null = null;
  let timer: NodeJS.Timeout | null = null;
  let running = false;
  let round: Promise<void> | null = null;

  const thresholdReached = (node: ManagedNode): ErrorKind | null =>
    tracker === null ? null : tracker.thresholdReached(trackerKey(node.virtualStorage, node.storage));

  async function checkNode(node: ManagedNode): Promise<boolean> {
    const tripped = thresholdReached(node);
    if (tripped !== null) {
      log.warn(
        { virtual_storage: node.virtualStorage, storage: node.storage },
        `${tripped} error threshold reached for storage ${JSON.stringify(node.storage)}`,
      );
      return false;
    }
    try {
      const health = createClient(Health, node.channel);
      const response = await health.check({ service: "" }, { deadline: Date.now() + timeoutMs });
      return response.status === HealthCheckResponse_ServingStatus.SERVING;
    } catch (err) {
      log.error(
        { virtual_storage: node.virtualStorage, storage: node.storage, err: (err as Error).message },
        "failed checking node health",
      );
      return false;
    }
  }

  async function syncDatabase(results: HealthCheckResult[]): Promise<void> {
    try {
      await withTimeout(statusStore.recordHealthChecks(results), DATABASE_TIMEOUT_MS, "update checks");
      const consensus = await withTimeout(
        statusStore.consensusHealthyStorages(),
        DATABASE_TIMEOUT_MS,
        "read healthy storages",
      );
      const next = new Map<string, ReadonlySet<string>>();
      for (const name of byVirtualStorage.keys()) next.set(name, new Set(consensus[name] ?? []));
      consensusView = next;
      if (!databaseReachable) log.info("database reachable again: health checks recorded");
      databaseReachable = true;
    } catch (err) {
      // Logged once per outage: this runs every second.
      if (databaseReachable) {
        log.error(
          { err: (err as Error).message },
          "checking health failed: cannot record health checks in the database",
        );
      }
      databaseReachable = false;
    }
  }

  /** One round of health checks; the local view changes at once. */
  async function checkAll(): Promise<HealthCheckResult[]> {
    const results = await Promise.all(
      allNodes.map(
        async (node): Promise<HealthCheckResult> => ({
          virtualStorage: node.virtualStorage,
          storage: node.storage,
          healthy: await checkNode(node),
        }),
      ),
    );
    const next = new Map<string, Set<string>>();
    for (const name of byVirtualStorage.keys()) next.set(name, new Set());
    for (const r of results) if (r.healthy) next.get(r.virtualStorage)?.add(r.storage);
    localView = next;
    return results;
  }

  function startSync(results: HealthCheckResult[]): Promise<void> {
    const sync = syncDatabase(results).finally(() => {
      if (databaseSync === sync) databaseSync = null;
    });
    databaseSync = sync;
    return sync;
  }

  async function loopRound(): Promise<void> {
    const results = await checkAll();
    // A slow database must not delay the next health checks, and syncs must not pile up: a round
    // whose predecessor's sync is still running leaves its results to the next round.
    if (databaseSync === null) void startSync(results);
  }

  /** A round whose results are recorded before it resolves (start-up, tests). */
  async function checkNow(): Promise<void> {
    const results = await checkAll();
    while (databaseSync !== null) await databaseSync;
    await startSync(results);
  }

  function schedule(delayMs: number): void {
    if (!running) return;
    timer = setTimeout(() => {
      timer = null;
      const started = Date.now();
      round = loopRound()
        .catch((err: unknown) => log.error({ err: (err as Error).message }, "health check round failed"))
        .finally(() => {
          round = null;
          schedule(Math.max(0, intervalMs - (Date.now() - started)));
        });
    }, delayMs);
  }

  function locallyHealthy(virtualStorage: string): ReadonlySet<string> {
    const view = localView.get(virtualStorage) ?? EMPTY;
    if (tracker === null || tracker.empty) return view;
    const filtered = new Set<string>();
    for (const storage of view) {
      if (tracker.thresholdReached(trackerKey(virtualStorage, storage)) === null) filtered.add(storage);
    }
    return filtered;
  }

  return {
    praefectName,

    virtualStorages: () => [...byVirtualStorage.keys()],

    nodes: (virtualStorage) => byVirtualStorage.get(virtualStorage) ?? [],

    node: (virtualStorage, storage) => byVirtualStorage.get(virtualStorage)?.find((n) => n.storage === storage),

    locallyHealthy,

    consensusHealthy: (virtualStorage) => consensusView.get(virtualStorage) ?? EMPTY,

    healthyNodes() {
      const out: Record<string, string[]> = {};
      for (const name of byVirtualStorage.keys()) out[name] = [...locallyHealthy(name)];
      return out;
    },

    reportError(virtualStorage, storage, kind) {
      tracker?.record(trackerKey(virtualStorage, storage), kind);
    },

    get databaseReachable() {
      return databaseReachable;
    },

    checkNow,

    updateTokens(tokens) {
      // Plan first, then swap with no await in between: the swap is atomic for every caller.
      const swaps: { node: ManagedNode; token: string }[] = [];
      for (const t of tokens) {
        const node = byVirtualStorage.get(t.virtualStorage)?.find((n) => n.storage === t.storage);
        if (node && node.address === t.address && node.token !== t.token) swaps.push({ node, token: t.token });
      }
      const changes: NodeTokenChange[] = [];
      for (const { node, token } of swaps) {
        changes.push({
          virtualStorage: node.virtualStorage,
          storage: node.storage,
          previousGeneration: tokenGeneration(node.token),
          generation: tokenGeneration(token),
        });
        node.setToken(token);
        tokenInfo?.set(node.virtualStorage, node.storage, token);
      }
      for (const c of changes) {
        log.info(
          {
            virtual_storage: c.virtualStorage,
            storage: c.storage,
            previous_generation: c.previousGeneration,
            generation: c.generation,
          },
          "token presented to the node changed",
        );
      }
      return changes;
    },

    async start() {
      if (running) return;
      running = true;
      log.info({ praefect_name: praefectName }, "health manager started");
      // Like upstream, the first round completes before the router serves, so it never routes
      // on an empty view.
      await checkNow();
      schedule(intervalMs);
    },

    async stop() {
      running = false;
      if (timer) clearTimeout(timer);
      timer = null;
      await round;
      await databaseSync;
      await Promise.all(allNodes.map((n) => n.close()));
      log.info("health manager stopped");
    },
  };
}
