// Node health as Praefect records it: every health-check round upserts this Praefect's view of
// each node into node_status, and the healthy_storages view turns the views of all Praefects
// into a consensus (a node is healthy when at least half of the recently active Praefects saw it
// healthy in the last 10 s). Routing uses the local view; failover uses the consensus.
//
// Fast failure detection ([failover] error thresholds configured) keeps that consensus and its
// quorum, and only changes what a Praefect's vote is: its latest health check, rather than "seen
// healthy at some point in the last 10 s". Upstream's answer to "error-based detection vs.
// consensus" is that tracked errors never elect anything by themselves: the error tracker is a
// circuit breaker in front of the health check, so a Praefect that sees errors reports the node
// unhealthy in node_status, as one vote among the Praefects. We keep exactly that, and let the
// vote count as soon as it is cast (upstream waits for the 10 s sighting to age out, which is
// what makes its failover take ~10 s). A Praefect whose view differs from the majority (e.g.
// partitioned from the nodes) still cannot change the consensus: the quorum rule is the same.
import type { Queryable } from "./db.js";

/**
 * healthy_storages with each Praefect's vote being its latest check: a sighting counts only if it
 * is recent (10 s, as the view) and no failed check came after it (a healthy check sets
 * last_seen_active_at and last_contact_attempt_at to the same now()). The quorum base is the
 * view's: Praefects that attempted contact with the virtual storage in the last minute. A
 * parenthesised subquery with the view's columns (virtual_storage, storage).
 */
export const LATEST_CHECK_HEALTHY_STORAGES = `(
  SELECT ns.shard_name AS virtual_storage, ns.node_name AS storage
  FROM node_status AS ns
  WHERE ns.last_seen_active_at >= now() - interval '10 seconds'
    AND ns.last_seen_active_at >= ns.last_contact_attempt_at
  GROUP BY ns.shard_name, ns.node_name
  HAVING count(ns.praefect_name) >= (
    SELECT ceil(count(DISTINCT active.praefect_name) / 2.0)
    FROM node_status AS active
    WHERE active.shard_name = ns.shard_name
      AND active.last_contact_attempt_at >= now() - interval '60 seconds'
  )
)`;

/** How a Praefect's health checks vote in the consensus. */
export type ConsensusVote =
  /** Upstream's healthy_storages: a node seen healthy in the last 10 s has the vote. */
  | "recent-sighting"
  /** Fast failure detection: only a node whose latest (recent) check passed has the vote. */
  | "latest-check";

/** The relation (view name or subquery) that yields the consensus under `vote`. */
export function healthyStoragesRelation(vote: ConsensusVote): string {
  return vote === "latest-check" ? LATEST_CHECK_HEALTHY_STORAGES : "healthy_storages";
}

/** The name a Praefect records its checks under: `<hostname>:<listen address or socket path>`. */
export function praefectName(hostname: string, listenAddress: string): string {
  return `${hostname}:${listenAddress}`;
}

export interface HealthCheckResult {
  virtualStorage: string;
  storage: string;
  healthy: boolean;
}

/** Healthy storages per virtual storage; virtual storages with none are absent. */
export type HealthyStorages = Record<string, string[]>;

function groupByVirtualStorage(rows: { virtual_storage: string; storage: string }[]): HealthyStorages {
  const result: HealthyStorages = {};
  for (const row of rows) {
    const list = result[row.virtual_storage];
    if (list) list.push(row.storage);
    else result[row.virtual_storage] = [row.storage];
  }
  return result;
}

export class NodeStatusStore {
  constructor(
    private readonly db: Queryable,
    /** This Praefect's name, see `praefectName`. */
    readonly praefectName: string,
    private readonly vote: ConsensusVote = "recent-sighting",
  ) {}

  /**
   * Records one round of health checks: every node was contacted now; the healthy ones were also
   * seen active now. An unhealthy result keeps the previous last_seen_active_at.
   */
  async recordHealthChecks(results: readonly HealthCheckResult[]): Promise<void> {
    if (results.length === 0) return;
    // Sorted so concurrent upserts from several Praefects take row locks in the same order.
    const sorted = [...results].sort(
      (a, b) => a.virtualStorage.localeCompare(b.virtualStorage) || a.storage.localeCompare(b.storage),
    );
    await this.db.query(
      `INSERT INTO node_status (praefect_name, shard_name, node_name, last_contact_attempt_at, last_seen_active_at)
       SELECT $1, checked.shard_name, checked.node_name, now(), CASE WHEN checked.healthy THEN now() END
       FROM unnest($2::text[], $3::text[], $4::boolean[]) AS checked (shard_name, node_name, healthy)
       ON CONFLICT (praefect_name, shard_name, node_name) DO UPDATE
         SET last_contact_attempt_at = now(),
             last_seen_active_at = coalesce(EXCLUDED.last_seen_active_at, node_status.last_seen_active_at)`,
      [
        this.praefectName,
        sorted.map((r) => r.virtualStorage),
        sorted.map((r) => r.storage),
        sorted.map((r) => r.healthy),
      ],
    );
  }

  /** The consensus: storages the healthy_storages view reports, per virtual storage, sorted. */
  async consensusHealthyStorages(): Promise<HealthyStorages> {
    const { rows } = await this.db.query<{ virtual_storage: string; storage: string }>(
      `SELECT virtual_storage, storage FROM ${healthyStoragesRelation(this.vote)} AS healthy
       ORDER BY virtual_storage, storage`,
    );
    return groupByVirtualStorage(rows);
  }

  /** Whether `storage` is healthy by consensus. */
  async isHealthyByConsensus(virtualStorage: string, storage: string): Promise<boolean> {
    const { rows } = await this.db.query(
      `SELECT 1 FROM ${healthyStoragesRelation(this.vote)} AS healthy WHERE virtual_storage = $1 AND storage = $2`,
      [virtualStorage, storage],
    );
    return rows.length > 0;
  }

  /** Praefects that attempted contact with the virtual storage's nodes in the last minute (the quorum base). */
  async activePraefects(virtualStorage: string): Promise<string[]> {
    const { rows } = await this.db.query<{ praefect_name: string }>(
      `SELECT DISTINCT praefect_name FROM node_status
       WHERE shard_name = $1 AND last_contact_attempt_at >= now() - interval '60 seconds'
       ORDER BY praefect_name`,
      [virtualStorage],
    );
    return rows.map((r) => r.praefect_name);
  }
}
