// The reconciler's scheduling query. One Praefect at a time (advisory lock 1) compares the
// desired state (assignments, latest generation) with the replicas and queues jobs to converge:
// - `update` for each healthy assigned storage whose replica is outdated or missing, sourced from
//   a random healthy up-to-date replica, unless an unfinished update already targets it;
// - `delete_replica` for a replica on an unassigned storage, once no replica is older than it and
//   no assigned replica is missing, and no job uses the replica; at most one such job per repository at a time, and
//   none for repositories without assignments (then every storage counts as assigned).
import { type Queryable, toNumber } from "./db.js";
import type { HealthyStorages } from "./health.js";

/** The advisory lock each reconciliation run takes (upstream's advisorylock.Reconcile). */
export const RECONCILE_ADVISORY_LOCK = 1;

export interface ScheduledJob {
  correlationId: string;
  repositoryId: number;
  change: "update" | "delete_replica";
  virtualStorage: string;
  relativePath: string;
  replicaPath: string;
  sourceStorage: string | null;
  targetStorage: string;
}

/**
 * Runs one reconciliation over the virtual storages that have at least two healthy storages in
 * `healthy` (this Praefect's local view: a replication needs a source and a target). Returns the
 * jobs it queued; nothing when another Praefect holds the reconciliation lock.
 */
export async function scheduleReconciliationJobs(db: Queryable, healthy: HealthyStorages): Promise<ScheduledJob[]> {
  const virtualStorages: string[] = [];
  const storages: string[] = [];
  for (const [virtualStorage, list] of Object.entries(healthy)) {
    if (list.length < 2) continue;
    for (const storage of list) {
      virtualStorages.push(virtualStorage);
      storages.push(storage);
    }
  }
  if (virtualStorages.length === 0) return [];

  const { rows } = await db.query<{
    correlation_id: string;
    repository_id: string;
    change: "update" | "delete_replica";
    virtual_storage: string;
    relative_path: string;
    replica_path: string | null;
    source_node_storage: string | null;
    target_node_storage: string;
  }>(
    `WITH reconciliation_lock AS (
       SELECT pg_try_advisory_xact_lock($1) AS acquired
     ),
     healthy AS (
       SELECT unnest($2::text[]) AS virtual_storage, unnest($3::text[]) AS storage
     ),
     unfinished AS (
       SELECT (job ->> 'repository_id')::bigint AS repository_id, job ->> 'change' AS change,
              job ->> 'source_node_storage' AS source, job ->> 'target_node_storage' AS target
       FROM replication_queue
       WHERE state NOT IN ('completed', 'dead')
     ),
     deletions AS (
       SELECT DISTINCT ON (repo.repository_id)
              repo.repository_id, repo.virtual_storage, repo.relative_path, repo.replica_path, replica.storage
       FROM storage_repositories AS replica
       JOIN repositories AS repo ON repo.repository_id = replica.repository_id
       JOIN healthy ON healthy.virtual_storage = repo.virtual_storage AND healthy.storage = replica.storage
       WHERE (
           -- assignments exist, and this storage is not one of them
           SELECT count(a.storage) > 0 AND count(a.storage) FILTER (WHERE a.storage = replica.storage) = 0
           FROM repository_assignments AS a
           WHERE a.repository_id = repo.repository_id
         )
         AND replica.generation <= (
           -- no other replica is older and no assigned replica is missing (counted as -1)
           SELECT min(coalesce(r.generation, -1))
           FROM repository_assignments AS a
           FULL JOIN storage_repositories AS r USING (repository_id, storage)
           WHERE repository_id = repo.repository_id
         )
         AND NOT EXISTS (
           SELECT FROM unfinished AS u
           WHERE u.repository_id = repo.repository_id
             AND (u.source = replica.storage OR u.target = replica.storage)
         )
         AND NOT EXISTS (
           SELECT FROM unfinished AS u
           WHERE u.repository_id = repo.repository_id AND u.change = 'delete_replica'
         )
     ),
     outdated AS (
       SELECT repo.repository_id, repo.virtual_storage, repo.relative_path, repo.replica_path,
              healthy.storage AS target_node_storage
       FROM repositories AS repo
       JOIN healthy ON healthy.virtual_storage = repo.virtual_storage
       LEFT JOIN storage_repositories AS replica
         ON replica.repository_id = repo.repository_id AND replica.storage = healthy.storage
       WHERE coalesce(replica.generation <> repo.generation, true)
         AND (
           SELECT count(a.storage) = 0 OR count(a.storage) FILTER (WHERE a.storage = healthy.storage) = 1
           FROM repository_assignments AS a
           WHERE a.repository_id = repo.repository_id
         )
     ),
     sources AS (
       SELECT repo.repository_id, replica.storage AS source_node_storage
       FROM storage_repositories AS replica
       JOIN repositories AS repo
         ON repo.repository_id = replica.repository_id
        AND repo.relative_path = replica.relative_path
        AND repo.generation = replica.generation
       JOIN healthy ON healthy.virtual_storage = repo.virtual_storage AND healthy.storage = replica.storage
       WHERE NOT EXISTS (
         SELECT FROM unfinished AS u
         WHERE u.repository_id = repo.repository_id AND u.target = replica.storage AND u.change = 'delete_replica'
       )
     ),
     updates AS (
       SELECT DISTINCT ON (outdated.repository_id, outdated.target_node_storage)
              outdated.repository_id, outdated.virtual_storage, outdated.relative_path, outdated.replica_path,
              sources.source_node_storage, outdated.target_node_storage
       FROM outdated
       JOIN sources USING (repository_id)
       WHERE NOT EXISTS (
         SELECT FROM unfinished AS u
         WHERE u.repository_id = outdated.repository_id
           AND u.target = outdated.target_node_storage
           AND u.change = 'update'
       )
       ORDER BY outdated.repository_id, outdated.target_node_storage, random()
     ),
     queued AS (
       INSERT INTO replication_queue (lock_id, job, meta)
       SELECT virtual_storage || '|' || target_node_storage || '|' || relative_path,
              jsonb_build_object(
                'repository_id', coalesce(repository_id, 0),
                'replica_path', coalesce(replica_path, relative_path),
                'change', change,
                'virtual_storage', virtual_storage,
                'relative_path', relative_path,
                'source_node_storage', source_node_storage,
                'target_node_storage', target_node_storage,
                'params', NULL
              ),
              jsonb_build_object('correlation_id', md5(random()::text || clock_timestamp()::text))
       FROM (
         SELECT repository_id, virtual_storage, relative_path, replica_path,
                source_node_storage, target_node_storage, 'update' AS change
         FROM updates
         UNION ALL
         SELECT repository_id, virtual_storage, relative_path, replica_path,
                NULL, storage, 'delete_replica'
         FROM deletions
       ) AS jobs
       -- without the lock another Praefect is reconciling; queueing too would duplicate its jobs
       WHERE (SELECT acquired FROM reconciliation_lock)
       RETURNING lock_id, job, meta
     ),
     locks AS (
       INSERT INTO replication_queue_lock (id)
       SELECT lock_id FROM queued
       ON CONFLICT (id) DO NOTHING
     )
     SELECT meta ->> 'correlation_id' AS correlation_id,
            job ->> 'repository_id' AS repository_id,
            job ->> 'change' AS change,
            job ->> 'virtual_storage' AS virtual_storage,
            job ->> 'relative_path' AS relative_path,
            job ->> 'replica_path' AS replica_path,
            job ->> 'source_node_storage' AS source_node_storage,
            job ->> 'target_node_storage' AS target_node_storage
     FROM queued
     ORDER BY 4, 5, 8`,
    [RECONCILE_ADVISORY_LOCK, virtualStorages, storages],
  );
  return rows.map((r) => ({
    correlationId: r.correlation_id,
    repositoryId: toNumber(r.repository_id),
    change: r.change,
    virtualStorage: r.virtual_storage,
    relativePath: r.relative_path,
    replicaPath: r.replica_path ?? r.relative_path,
    sourceStorage: r.source_node_storage,
    targetStorage: r.target_node_storage,
  }));
}
