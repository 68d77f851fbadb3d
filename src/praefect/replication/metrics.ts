// Replication metrics under upstream's names: delay (queued → started) and latency (started →
// done) per change type, jobs in flight, and the queue depth read from the database at scrape time.
import { Gauge, Histogram, type Registry } from "prom-client";
import type { Logger } from "../../shared/logging.js";
import type { ChangeType, ReplicationQueue } from "../datastore/queue.js";

/** Every change type upstream pre-registers label values for. */
export const CHANGE_TYPES: readonly ChangeType[] = ["update", "create", "delete", "delete_replica", "rename"];

export interface ReplicationMetrics {
  delay: Histogram<"type">;
  latency: Histogram<"type">;
  inFlight: Gauge<"virtual_storage" | "gitaly_storage" | "change_type">;
}

export function registerReplicationMetrics(registry: Registry, buckets: readonly number[]): ReplicationMetrics {
  const histogram = (name: string, help: string) => {
    const h = new Histogram({ name, help, labelNames: ["type"], buckets: [...buckets], registers: [registry] });
    for (const type of CHANGE_TYPES) h.zero({ type });
    return h;
  };
  return {
    delay: histogram(
      "gitaly_praefect_replication_delay",
      "Time from a replication job's creation to its start (seconds).",
    ),
    latency: histogram("gitaly_praefect_replication_latency", "Time a replication job took to run (seconds)."),
    inFlight: new Gauge({
      name: "gitaly_praefect_replication_jobs",
      help: "Number of replication jobs in flight.",
      labelNames: ["virtual_storage", "gitaly_storage", "change_type"],
      registers: [registry],
    }),
  };
}

/**
 * gitaly_praefect_replication_queue_depth{virtual_storage,target_node,state}, queried when scraped
 * (upstream exports it on /db_metrics so the database load follows the scrape interval). A failed
 * query leaves the gauge empty for that scrape rather than failing the whole scrape.
 */
export function registerQueueDepthMetric(
  registry: Registry,
  queue: ReplicationQueue,
  logger: Logger,
  timeoutMs: number,
): Gauge<"virtual_storage" | "target_node" | "state"> {
  return new Gauge({
    name: "gitaly_praefect_replication_queue_depth",
    help: "Number of jobs in the replication queue",
    labelNames: ["virtual_storage", "target_node", "state"],
    registers: [registry],
    async collect() {
      this.reset();
      let timer: NodeJS.Timeout | undefined;
      try {
        const depth = await Promise.race([
          queue.queueDepth(),
          new Promise<never>((_, reject) => {
            timer = setTimeout(() => reject(new Error(`timed out after ${timeoutMs} ms`)), timeoutMs);
          }),
        ]);
        for (const d of depth) {
          this.set({ virtual_storage: d.virtualStorage, target_node: d.targetStorage, state: d.state }, d.count);
        }
      } catch (err) {
        logger.error({ err: (err as Error).message }, "collecting replication queue depth failed");
      } finally {
        clearTimeout(timer);
      }
    },
  });
}

/**
 * gitaly_praefect_unavailable_repositories{virtual_storage}: repositories without any valid
 * primary, counted when scraped (upstream's RepositoryStoreCollector, also on /db_metrics).
 */
export function registerUnavailableRepositoriesMetric(
  registry: Registry,
  count: (virtualStorages: readonly string[]) => Promise<Record<string, number>>,
  virtualStorages: readonly string[],
  logger: Logger,
  timeoutMs: number,
): Gauge<"virtual_storage"> {
  return new Gauge({
    name: "gitaly_praefect_unavailable_repositories",
    help: "Number of repositories that have no healthy, up to date replicas.",
    labelNames: ["virtual_storage"],
    registers: [registry],
    async collect() {
      this.reset();
      let timer: NodeJS.Timeout | undefined;
      try {
        const counts = await Promise.race([
          count(virtualStorages),
          new Promise<never>((_, reject) => {
            timer = setTimeout(() => reject(new Error(`timed out after ${timeoutMs} ms`)), timeoutMs);
          }),
        ]);
        for (const [virtualStorage, n] of Object.entries(counts)) this.set({ virtual_storage: virtualStorage }, n);
      } catch (err) {
        logger.error({ err: (err as Error).message }, "collecting unavailable repositories failed");
      } finally {
        clearTimeout(timer);
      }
    },
  });
}
