// For the router suites: a NodeManager over real Gitaly processes whose health is simply
// "the process is alive" (plus a switch to declare a node down), recording its view in
// node_status every second like Praefect's health loop so the database consensus and
// elections see it; and a router started on a free port.

import * as grpc from "@grpc/grpc-js";
import pg from "pg";
import type { Registry } from "prom-client";
import { NodeStatusStore } from "../../../src/praefect/datastore/health.js";
import type { GitalyNode, NodeManager } from "../../../src/praefect/nodes/types.js";
import {
  type PraefectRouter,
  type PraefectRouterConfig,
  startPraefectRouter,
} from "../../../src/praefect/server/praefect-server.js";
import { v2AuthInterceptor } from "../../../src/shared/auth/v2-token.js";
import { type BackchannelConnection, dialBackchannel } from "../../../src/shared/grpc/backchannel-client.js";
import { createLogger } from "../../../src/shared/logging.js";
import { createRegistry } from "../../../src/shared/metrics.js";
import type { GitalyProcess } from "../../harness/gitaly.js";

export interface ProcessNode {
  storage: string;
  gitaly: GitalyProcess;
  token: string;
}

function alive(gitaly: GitalyProcess): boolean {
  return gitaly.proc.child.exitCode === null && gitaly.proc.child.signalCode === null;
}

export class ProcessNodeManager implements NodeManager {
  readonly reportedErrors: string[] = [];
  /** Backchannel connections dialled to the nodes (sidechannel relays use them). */
  backchannelDials = 0;
  private readonly members: GitalyNode[];
  private readonly down = new Set<string>();
  private readonly status: NodeStatusStore;
  private readonly pool: pg.Pool;
  private readonly backchannels = new Map<string, Promise<BackchannelConnection>>();
  private timer: NodeJS.Timeout | undefined;
  /** Health records run one at a time, so one started before setDown() cannot land after it. */
  private recording: Promise<void> = Promise.resolve();

  constructor(
    private readonly virtualStorage: string,
    private readonly processes: readonly ProcessNode[],
    databaseUrl: string,
    readonly praefectName = "router-test:0",
  ) {
    // Its own pool, so the router suites can count the router's queries alone.
    this.pool = new pg.Pool({ connectionString: databaseUrl, max: 2 });
    this.status = new NodeStatusStore(this.pool, praefectName);
    this.members = processes.map((p) => ({
      virtualStorage,
      storage: p.storage,
      address: `tcp://${p.gitaly.address}`,
      token: p.token,
      channel: new grpc.Client(p.gitaly.address, grpc.credentials.createInsecure(), {
        interceptors: [v2AuthInterceptor(p.token)],
        "grpc.max_receive_message_length": -1,
        "grpc.initial_reconnect_backoff_ms": 50,
        "grpc.max_reconnect_backoff_ms": 500,
      }),
      backchannel: () => this.backchannel(p),
    }));
  }

  private backchannel(p: ProcessNode): Promise<BackchannelConnection> {
    const existing = this.backchannels.get(p.storage);
    const dial = () => {
      this.backchannelDials++;
      const conn = dialBackchannel(`tcp://${p.gitaly.address}`);
      conn.catch(() => this.backchannels.delete(p.storage));
      this.backchannels.set(p.storage, conn);
      return conn;
    };
    if (!existing) return dial();
    return existing.then((conn) => (conn.closed ? dial() : conn));
  }

  /** Declares a node down (or up again) in this Praefect's view, and records it now. */
  async setDown(storage: string, down: boolean): Promise<void> {
    if (down) this.down.add(storage);
    else this.down.delete(storage);
    await this.record();
  }

  private healthySet(): Set<string> {
    return new Set(this.processes.filter((p) => alive(p.gitaly) && !this.down.has(p.storage)).map((p) => p.storage));
  }

  private record(): Promise<void> {
    this.recording = this.recording
      .catch(() => undefined)
      .then(() => {
        const healthy = this.healthySet();
        return this.status.recordHealthChecks(
          this.processes.map((p) => ({
            virtualStorage: this.virtualStorage,
            storage: p.storage,
            healthy: healthy.has(p.storage),
          })),
        );
      });
    return this.recording;
  }

  virtualStorages(): string[] {
    return [this.virtualStorage];
  }
  nodes(virtualStorage: string): readonly GitalyNode[] {
    return virtualStorage === this.virtualStorage ? this.members : [];
  }
  node(virtualStorage: string, storage: string): GitalyNode | undefined {
    return this.nodes(virtualStorage).find((n) => n.storage === storage);
  }
  locallyHealthy(virtualStorage: string): ReadonlySet<string> {
    return virtualStorage === this.virtualStorage ? this.healthySet() : new Set();
  }
  consensusHealthy(virtualStorage: string): ReadonlySet<string> {
    return this.locallyHealthy(virtualStorage);
  }
  reportError(_virtualStorage: string, storage: string, kind: "read" | "write"): void {
    this.reportedErrors.push(`${kind}:${storage}`);
  }
  async start(): Promise<void> {
    await this.record();
    this.timer = setInterval(() => {
      this.record().catch(() => undefined);
    }, 1_000);
  }
  async stop(): Promise<void> {
    if (this.timer) clearInterval(this.timer);
    await this.recording.catch(() => undefined);
    for (const conn of this.backchannels.values()) await conn.then((c) => c.close()).catch(() => undefined);
    for (const n of this.members) n.channel.close();
    await this.pool.end();
  }
}

export interface TestRouter {
  router: PraefectRouter;
  registry: Registry;
  /** The router's log lines (info and above), parsed. */
  logLines: Record<string, unknown>[];
  address: string;
  /** A channel to the router signing every call with `token` (default: the router's token). */
  channel(token?: string): grpc.Client;
  stop(): Promise<void>;
}

export async function startTestRouter(options: {
  nodes: NodeManager;
  pool: pg.Pool;
  databaseUrl: string;
  token: string;
  virtualStorage: string;
  storages: string[];
  replicationFactor?: number;
  notifications?: boolean;
}): Promise<TestRouter> {
  const registry = createRegistry({ defaultMetrics: false });
  const logLines: Record<string, unknown>[] = [];
  const config: PraefectRouterConfig = {
    listen_addr: "127.0.0.1:0",
    auth: { token: options.token, transitioning: false },
    virtual_storage: [
      {
        name: options.virtualStorage,
        default_replication_factor: options.replicationFactor ?? 0,
        node: options.storages.map((storage) => ({ storage })),
      },
    ],
    failover: { enabled: true, election_strategy: "per_repository" },
    graceful_stop_timeout: 5_000,
  };
  const router = await startPraefectRouter({
    config,
    // Info level, kept in memory: tests read the "finished call" lines.
    logger: createLogger({
      component: "praefect",
      level: "info",
      destination: {
        write(line: string) {
          logLines.push(JSON.parse(line) as Record<string, unknown>);
        },
      },
    }),
    registry,
    nodes: options.nodes,
    db: options.pool,
    ...(options.notifications === false ? {} : { notificationsConnection: options.databaseUrl }),
    praefectName: "router-test:0",
  });
  const address = router.addresses.tcp ?? "";
  const channels: grpc.Client[] = [];
  return {
    router,
    registry,
    logLines,
    address,
    channel(token = options.token) {
      const c = new grpc.Client(address, grpc.credentials.createInsecure(), {
        interceptors: token ? [v2AuthInterceptor(token)] : [],
        "grpc.max_receive_message_length": -1,
      });
      channels.push(c);
      return c;
    },
    async stop() {
      for (const c of channels) c.close();
      await router.shutdown();
    },
  };
}

/** The value of one counter sample in the registry (0 when absent). */
export async function counterValue(registry: Registry, name: string, labels: Record<string, string>): Promise<number> {
  const metric = registry.getSingleMetric(name);
  if (!metric) return 0;
  const { values } = await metric.get();
  let total = 0;
  for (const v of values) {
    if (Object.entries(labels).every(([k, want]) => String(v.labels[k]) === want)) total += v.value;
  }
  return total;
}
