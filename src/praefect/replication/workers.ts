// The replication manager: background work that makes replicas converge.
// - Per virtual storage, `parallel_storage_processing_workers` workers take turns over its target
//   storages. For a locally healthy target a worker dequeues up to `batch_size` jobs, keeps their
//   locks alive (every 5 s) while it runs them one by one, and acknowledges each as completed,
//   failed (retried later) or dead (out of attempts). A target with nothing to do, or an unhealthy
//   one, is looked at again after a backoff growing from 1 s to 5 s.
// - Every 30 s jobs abandoned by a dead Praefect (job locks older than 1 min) are released; every
//   30 min unused replica locks are removed.
// - Every `reconciliation.scheduling_interval` (if not 0) the reconciler queues the jobs that bring
//   assigned replicas up to date and remove unassigned ones, holding advisory lock 1 so one Praefect
//   at a time does it.
// Stopping lets jobs in progress finish (as upstream, which does not cancel in-flight work).
import type pg from "pg";
import { Histogram, type Registry } from "prom-client";
import type { Logger } from "../../shared/logging.js";
import type { PraefectConfig } from "../config/schema.js";
import { storageNames } from "../config/schema.js";
import { failureState, type ReplicationEvent, ReplicationQueue } from "../datastore/queue.js";
import { scheduleReconciliationJobs } from "../datastore/reconciler.js";
import { RepositoryStore } from "../datastore/repositories.js";
import type { NodeManager } from "../nodes/types.js";
import {
  type ReplicationMetrics,
  registerQueueDepthMetric,
  registerReplicationMetrics,
  registerUnavailableRepositoriesMetric,
} from "./metrics.js";
import { correlationIdOf, runReplicationJob } from "./replicator.js";

export interface ReplicationOptions {
  config: Pick<PraefectConfig, "virtual_storage" | "replication" | "reconciliation" | "prometheus">;
  nodes: NodeManager;
  db: pg.Pool;
  logger: Logger;
  registry: Registry;
  /**
   * Where the database-derived metrics (queue depth, unavailable repositories) go; upstream serves
   * them on /db_metrics. Default: `registry`.
   */
  dbRegistry?: Registry;
  /** Test seams: upstream's values otherwise. */
  intervals?: Partial<ReplicationIntervals>;
}

export interface ReplicationIntervals {
  backoffStartMs: number;
  backoffMaxMs: number;
  heartbeatMs: number;
  staleSweepMs: number;
  staleAfterMs: number;
  lockCleanupMs: number;
}

export const DEFAULT_INTERVALS: ReplicationIntervals = {
  backoffStartMs: 1_000,
  backoffMaxMs: 5_000,
  heartbeatMs: 5_000,
  staleSweepMs: 30_000,
  staleAfterMs: 60_000,
  lockCleanupMs: 30 * 60_000,
};

export interface ReplicationManager {
  /** Runs the reconciler once now (as the timer would); returns how many jobs it queued. */
  reconcileNow(): Promise<number>;
  /** Stops taking new work and waits for jobs in progress to finish. */
  stop(): Promise<void>;
}

type FinalState = "completed" | "failed" | "dead";

/** Upstream's ExpBackoffFactory: start, doubling, capped. */
class Backoff {
  private next: number;
  constructor(
    private readonly startMs: number,
    private readonly maxMs: number,
  ) {
    this.next = startMs;
  }
  take(): number {
    const current = this.next;
    this.next = Math.min(this.next * 2, this.maxMs);
    return current;
  }
  reset(): void {
    this.next = this.startMs;
  }
}

/** Target storages of one virtual storage, handed to workers in turn; idle ones come back after a delay. */
class TargetRotation {
  private readonly ready: string[];
  private readonly waiters: (() => void)[] = [];
  private readonly timers = new Set<NodeJS.Timeout>();

  constructor(storages: readonly string[]) {
    this.ready = [...storages];
  }

  take(): string | undefined {
    return this.ready.shift();
  }

  put(storage: string): void {
    this.ready.push(storage);
    this.waiters.shift()?.();
  }

  putLater(storage: string, delayMs: number): void {
    const timer = setTimeout(() => {
      this.timers.delete(timer);
      this.put(storage);
    }, delayMs);
    this.timers.add(timer);
  }

  /** Resolves when a storage is put back (or on wake-all). */
  wait(): Promise<void> {
    return new Promise((resolve) => this.waiters.push(resolve));
  }

  close(): void {
    for (const timer of this.timers) clearTimeout(timer);
    this.timers.clear();
    for (const wake of this.waiters.splice(0)) wake();
  }
}

function every(ms: number, fn: () => Promise<void>): { stop(): Promise<void> } {
  let running: Promise<void> = Promise.resolve();
  let stopped = false;
  let timer: NodeJS.Timeout | null = null;
  const schedule = () => {
    if (stopped) return;
    timer = setTimeout(() => {
      running = fn().finally(schedule);
    }, ms);
  };
  schedule();
  return {
    async stop() {
      stopped = true;
      if (timer) clearTimeout(timer);
      await running;
    },
  };
}

export function startReplication(options: ReplicationOptions): ReplicationManager {
  const { config, nodes, db } = options;
  const intervals = { ...DEFAULT_INTERVALS, ...options.intervals };
  const log = options.logger.child({ component: "replication_manager" });
  const queue = new ReplicationQueue(db);
  const repositories = new RepositoryStore(db, storageNames(config));
  const metrics: ReplicationMetrics = registerReplicationMetrics(
    options.registry,
    config.prometheus.grpc_latency_buckets,
  );
  const dbRegistry = options.dbRegistry ?? options.registry;
  registerQueueDepthMetric(dbRegistry, queue, log, config.prometheus.scrape_timeout);
  registerUnavailableRepositoriesMetric(
    dbRegistry,
    (virtualStorages) => repositories.countUnavailableRepositories(virtualStorages),
    config.virtual_storage.map((vs) => vs.name),
    log,
    config.prometheus.scrape_timeout,
  );
  const reconcileSeconds = new Histogram({
    name: "gitaly_praefect_reconciliation_scheduling_seconds",
    help: "The time spent performing a single reconciliation scheduling run.",
    buckets: [...config.reconciliation.histogram_buckets],
    registers: [options.registry],
  });

  let stopping = false;

  async function runEvent(event: ReplicationEvent): Promise<FinalState> {
    const { job } = event;
    const jobLog = log.child({
      virtual_storage: job.virtualStorage,
      replication_job_target: job.targetNodeStorage,
      correlation_id: correlationIdOf(event),
    });
    jobLog.info(
      { event_id: event.id, change: job.change, relative_path: job.relativePath },
      "replication job processing started",
    );
    const started = Date.now();
    metrics.delay.observe({ type: job.change }, Math.max(0, started - event.createdAt.getTime()) / 1000);
    const inFlight = {
      virtual_storage: job.virtualStorage,
      gitaly_storage: job.targetNodeStorage,
      change_type: job.change,
    };
    metrics.inFlight.inc(inFlight);
    try {
      const outcome = await runReplicationJob({ nodes, repositories, logger: jobLog }, event);
      metrics.latency.observe({ type: job.change }, (Date.now() - started) / 1000);
      jobLog.info({ event_id: event.id, new_state: "completed", outcome }, "replication job processing finished");
      return "completed";
    } catch (err) {
      const state = failureState(event);
      jobLog.error(
        { event_id: event.id, new_state: state, err: (err as Error).message },
        "replication job processing finished",
      );
      return state;
    } finally {
      metrics.inFlight.dec(inFlight);
    }
  }

  /** Dequeues and runs one batch for the target; returns how many jobs it took. */
  async function handleTarget(virtualStorage: string, target: string): Promise<number> {
    let events: ReplicationEvent[];
    try {
      events = await queue.dequeue(virtualStorage, target, config.replication.batch_size);
    } catch (err) {
      log.error(
        { virtual_storage: virtualStorage, replication_job_target: target, err: (err as Error).message },
        "failed to dequeue replication events",
      );
      return 0;
    }
    if (events.length === 0) return 0;
    const heartbeat = queue.startHeartbeat(events, intervals.heartbeatMs, (err) =>
      log.error({ err: (err as Error).message, event_ids: events.map((e) => e.id) }, "health update loop"),
    );
    const byState = new Map<FinalState, number[]>();
    try {
      for (const event of events) {
        const state = await runEvent(event);
        byState.set(state, [...(byState.get(state) ?? []), event.id]);
      }
    } finally {
      await heartbeat.stop();
    }
    for (const [state, ids] of byState) {
      try {
        const acknowledged = new Set(await queue.acknowledge(state, ids));
        const missed = ids.filter((id) => !acknowledged.has(id));
        if (missed.length > 0) log.error({ state, event_ids: missed }, "replication events were not acknowledged");
      } catch (err) {
        log.error({ state, event_ids: ids, err: (err as Error).message }, "failed to acknowledge replication events");
      }
    }
    return events.length;
  }

  async function worker(virtualStorage: string, rotation: TargetRotation, backoffs: Map<string, Backoff>) {
    while (!stopping) {
      const target = rotation.take();
      if (target === undefined) {
        await rotation.wait();
        continue;
      }
      let processed = 0;
      if (nodes.locallyHealthy(virtualStorage).has(target)) {
        processed = await handleTarget(virtualStorage, target);
      }
      const backoff = backoffs.get(target) as Backoff;
      if (processed > 0) {
        backoff.reset();
        rotation.put(target);
      } else {
        rotation.putLater(target, backoff.take());
      }
    }
  }

  const rotations: TargetRotation[] = [];
  const workers: Promise<void>[] = [];
  for (const vs of config.virtual_storage) {
    const storages = vs.node.map((n) => n.storage);
    const rotation = new TargetRotation(storages);
    rotations.push(rotation);
    const backoffs = new Map(storages.map((s) => [s, new Backoff(intervals.backoffStartMs, intervals.backoffMaxMs)]));
    const count = Math.min(config.replication.parallel_storage_processing_workers, storages.length);
    for (let i = 0; i < count; i++) {
      workers.push(
        worker(vs.name, rotation, backoffs).catch((err: unknown) =>
          log.error({ virtual_storage: vs.name, err: (err as Error).message }, "replication worker failed"),
        ),
      );
    }
    log.info({ virtual_storage: vs.name, workers: count }, "processing started");
  }

  const staleSweep = every(intervals.staleSweepMs, async () => {
    try {
      const released = await queue.acknowledgeStale(intervals.staleAfterMs);
      if (released > 0) log.info({ component: "ProcessStale", count: released }, "stale replication jobs deleted");
    } catch (err) {
      log.error({ err: (err as Error).message }, "background periodical acknowledgement for stale replication jobs");
    }
  });

  const lockCleanup = every(intervals.lockCleanupMs, async () => {
    try {
      const removed = await queue.cleanUpLocks();
      if (removed > 0) log.info({ component: "CleanUpLocks", count: removed }, "unused replication locks deleted");
    } catch (err) {
      log.error({ err: (err as Error).message }, "background periodical cleanup of unused replication queue locks");
    }
  });

  async function reconcileNow(): Promise<number> {
    const end = reconcileSeconds.startTimer();
    try {
      const healthy: Record<string, string[]> = {};
      for (const vs of nodes.virtualStorages()) healthy[vs] = [...nodes.locallyHealthy(vs)];
      const jobs = await scheduleReconciliationJobs(db, healthy);
      if (jobs.length > 0) log.info({ component: "reconciler", scheduled_jobs: jobs }, "reconciliation jobs scheduled");
      return jobs.length;
    } finally {
      end();
    }
  }

  const reconciler =
    config.reconciliation.scheduling_interval > 0
      ? every(config.reconciliation.scheduling_interval, async () => {
          try {
            await reconcileNow();
          } catch (err) {
            log.error({ component: "reconciler", err: (err as Error).message }, "automatic reconciliation failed");
          }
        })
      : null;
  if (reconciler === null) log.info("automatic reconciliation is disabled");

  return {
    reconcileNow,
    async stop() {
      stopping = true;
      for (const rotation of rotations) rotation.close();
      await Promise.all([...workers, staleSweep.stop(), lockCleanup.stop(), reconciler?.stop()]);
      log.info("processing stopped");
    },
  };
}
