// The contract between Praefect's control plane (node connections, health loop,
// consensus) and its data plane (the router). The router only ever sees nodes
// through this interface.
import type * as grpc from "@grpc/grpc-js";
import type { BackchannelConnection } from "../../shared/grpc/backchannel-client.js";

export interface GitalyNode {
  readonly virtualStorage: string;
  /** The node's physical storage name, e.g. "gitaly-1". */
  readonly storage: string;
  /** tcp://host:port, tls://host:port or unix:/path, as configured. */
  readonly address: string;
  /**
   * The node's own Gitaly token, as of now: it changes on a live reload, so read it when a call
   * starts, never keep it.
   */
  readonly token: string;
  /** A grpc-js channel that signs every call with the `token` of the moment the call starts (v2). */
  readonly channel: grpc.Client;
  /**
   * A backchannel connection to the node (dialled lazily, re-dialled after it drops):
   * for sidechannel relays and, later, transaction votes coming back.
   */
  backchannel(): Promise<BackchannelConnection>;
}

export interface NodeManager {
  virtualStorages(): string[];
  nodes(virtualStorage: string): readonly GitalyNode[];
  node(virtualStorage: string, storage: string): GitalyNode | undefined;
  /** This Praefect's own view from its last health checks: used for routing. */
  locallyHealthy(virtualStorage: string): ReadonlySet<string>;
  /** The database consensus (healthy_storages), cached per health-loop tick: used for election. */
  consensusHealthy(virtualStorage: string): ReadonlySet<string>;
  /** Error-based failure detection ([failover] *_error_threshold_count); a no-op when disabled. */
  reportError(virtualStorage: string, storage: string, kind: "read" | "write"): void;
  start(): Promise<void>;
  stop(): Promise<void>;
}
