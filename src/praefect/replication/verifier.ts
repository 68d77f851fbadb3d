// The background verifier ([background_verification]): every 2 s it leases up to 25 replicas on
// locally healthy storages that were never verified or not within `verification_interval`, asks
// each node whether it has the replica (RepositoryExists), and records the results; a replica the
// node does not have loses its record when `delete_invalid_records` is set. Every 10 s leases left
// behind by a Praefect that died mid-verification are released.
import type pg from "pg";
import { Counter, type Registry } from "prom-client";
import { RepositoryService } from "../../gen/repository_pb.js";
import { createClient } from "../../shared/grpc/service.js";
import type { Logger } from "../../shared/logging.js";
import type { PraefectConfig } from "../config/schema.js";
import {
  leaseVerificationJobs,
  recordVerificationResults,
  releaseExpiredLeases,
  type VerificationJob,
  type VerificationResult,
} from "../datastore/verifier.js";
import type { NodeManager } from "../nodes/types.js";

export const VERIFICATION_BATCH_SIZE = 25;
export const VERIFICATION_LEASE_MS = 30_000;

export interface VerifierOptions {
  config: Pick<PraefectConfig, "virtual_storage" | "background_verification">;
  nodes: NodeManager;
  db: pg.Pool;
  logger: Logger;
  registry: Registry;
  /** Test seams. */
  intervalMs?: number;
  leaseReleaseIntervalMs?: number;
}

export interface Verifier {
  /** One verification batch now; returns the results it recorded. */
  runOnce(): Promise<VerificationResult[]>;
  stop(): Promise<void>;
}

export function startVerifier(options: VerifierOptions): Verifier {
  const { config, nodes, db } = options;
  const log = options.logger.child({ component: "verifier" });
  const dequeued = new Counter({
    name: "gitaly_praefect_verification_jobs_dequeued_total",
    help: "Number of verification jobs dequeud.",
    labelNames: ["virtual_storage", "storage"],
    registers: [options.registry],
  });
  const completed = new Counter({
    name: "gitaly_praefect_verification_jobs_completed_total",
    help: "Number of verification jobs completed and their result",
    labelNames: ["virtual_storage", "storage", "result"],
    registers: [options.registry],
  });
  const staleReleased = new Counter({
    name: "gitaly_praefect_stale_verification_leases_released_total",
    help: "Number of stale verification leases released.",
    registers: [options.registry],
  });
  for (const vs of config.virtual_storage) {
    for (const node of vs.node) {
      dequeued.inc({ virtual_storage: vs.name, storage: node.storage }, 0);
      for (const result of ["error", "invalid", "valid"]) {
        completed.inc({ virtual_storage: vs.name, storage: node.storage, result }, 0);
      }
    }
  }

  async function verify(job: VerificationJob): Promise<VerificationResult> {
    const base = { repositoryId: job.repositoryId, storage: job.storage };
    const node = nodes.node(job.virtualStorage, job.storage);
    if (!node) return { ...base, succeeded: false, exists: false };
    try {
      const { exists } = await createClient(RepositoryService, node.channel).repositoryExists(
        { repository: { storageName: job.storage, relativePath: job.replicaPath } },
        { deadline: Date.now() + VERIFICATION_LEASE_MS },
      );
      return { ...base, succeeded: true, exists };
    } catch (err) {
      log.error(
        {
          virtual_storage: job.virtualStorage,
          storage: job.storage,
          relative_path: job.relativePath,
          err: (err as Error).message,
        },
        "failed checking if repository exists",
      );
      return { ...base, succeeded: false, exists: false };
    }
  }

  async function runOnce(): Promise<VerificationResult[]> {
    const healthy: Record<string, string[]> = {};
    for (const vs of nodes.virtualStorages()) healthy[vs] = [...nodes.locallyHealthy(vs)];
    const jobs = await leaseVerificationJobs(db, healthy, {
      batchSize: VERIFICATION_BATCH_SIZE,
      verificationIntervalMs: config.background_verification.verification_interval,
      leaseDurationMs: VERIFICATION_LEASE_MS,
    });
    if (jobs.length === 0) return [];
    for (const job of jobs) dequeued.inc({ virtual_storage: job.virtualStorage, storage: job.storage });
    const results = await Promise.all(jobs.map(verify));
    await recordVerificationResults(db, results, config.background_verification.delete_invalid_records);
    results.forEach((result, i) => {
      const job = jobs[i] as VerificationJob;
      const outcome = !result.succeeded ? "error" : result.exists ? "valid" : "invalid";
      completed.inc({ virtual_storage: job.virtualStorage, storage: job.storage, result: outcome });
      if (outcome === "invalid") {
        log.info(
          {
            virtual_storage: job.virtualStorage,
            storage: job.storage,
            relative_path: job.relativePath,
            replica_path: job.replicaPath,
            deleted: config.background_verification.delete_invalid_records,
          },
          "removing metadata records of non-existent replicas",
        );
      }
    });
    return results;
  }

  const loops: { timer: NodeJS.Timeout | null; running: Promise<unknown> }[] = [];
  let stopped = false;
  const loop = (ms: number, fn: () => Promise<unknown>, what: string) => {
    const state = { timer: null as NodeJS.Timeout | null, running: Promise.resolve() as Promise<unknown> };
    const schedule = () => {
      if (stopped) return;
      state.timer = setTimeout(() => {
        state.running = fn()
          .catch((err: unknown) => log.error({ err: (err as Error).message }, what))
          .finally(schedule);
      }, ms);
    };
    schedule();
    loops.push(state);
  };
  loop(options.intervalMs ?? 2_000, runOnce, "failed a background verification run");
  loop(
    options.leaseReleaseIntervalMs ?? 10_000,
    async () => {
      for (;;) {
        const released = await releaseExpiredLeases(db, VERIFICATION_LEASE_MS, VERIFICATION_BATCH_SIZE);
        staleReleased.inc(released.length);
        if (released.length > 0) log.info({ released }, "released stale verification leases");
        if (released.length < VERIFICATION_BATCH_SIZE) return;
      }
    },
    "failed releasing expired leases",
  );

  return {
    runOnce,
    async stop() {
      stopped = true;
      for (const l of loops) if (l.timer) clearTimeout(l.timer);
      await Promise.all(loops.map((l) => l.running.catch(() => undefined)));
    },
  };
}
