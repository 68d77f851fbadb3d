// The background verifier's queries: lease replicas due for verification on healthy storages,
// record results (deleting records of replicas found missing when configured to), and release
// leases left behind by a Praefect that died mid-verification.
import { type Queryable, toNumber } from "./db.js";
import type { HealthyStorages } from "./health.js";

export interface VerificationJob {
  repositoryId: number;
  replicaPath: string;
  virtualStorage: string;
  relativePath: string;
  storage: string;
}

export interface VerificationResult {
  repositoryId: number;
  storage: string;
  /** The check ran (RepositoryExists answered). */
  succeeded: boolean;
  /** What RepositoryExists answered; meaningful only when `succeeded`. */
  exists: boolean;
}

export interface LeaseOptions {
  batchSize: number;
  /** Replicas verified more recently than this are not due. */
  verificationIntervalMs: number;
  leaseDurationMs: number;
}

function flatten(healthy: HealthyStorages): { virtualStorages: string[]; storages: string[] } {
  const virtualStorages: string[] = [];
  const storages: string[] = [];
  for (const [virtualStorage, list] of Object.entries(healthy)) {
    for (const storage of list) {
      virtualStorages.push(virtualStorage);
      storages.push(storage);
    }
  }
  return { virtualStorages, storages };
}

/** Leases up to `batchSize` unverified or stale replicas on healthy storages, least recently verified first. */
export async function leaseVerificationJobs(
  db: Queryable,
  healthy: HealthyStorages,
  options: LeaseOptions,
): Promise<VerificationJob[]> {
  const { virtualStorages, storages } = flatten(healthy);
  const { rows } = await db.query<{
    repository_id: string;
    replica_path: string | null;
    virtual_storage: string;
    relative_path: string;
    storage: string;
  }>(
    `WITH due AS (
       SELECT due.repository_id, repo.relative_path, repo.replica_path, repo.virtual_storage, due.storage
       FROM (
         SELECT repository_id, storage
         FROM storage_repositories
         WHERE (verified_at IS NULL OR verified_at < now() - $1 * interval '1 millisecond')
           AND verification_leased_until IS NULL
         ORDER BY verified_at NULLS FIRST
         FOR NO KEY UPDATE SKIP LOCKED
       ) AS due
       JOIN repositories AS repo USING (repository_id)
       JOIN (SELECT unnest($4::text[]) AS virtual_storage, unnest($5::text[]) AS storage) AS healthy
         ON healthy.virtual_storage = repo.virtual_storage AND healthy.storage = due.storage
       LIMIT $2
     ),
     leased AS (
       UPDATE storage_repositories AS replica
       SET verification_leased_until = now() + $3 * interval '1 millisecond'
       FROM due
       WHERE replica.repository_id = due.repository_id AND replica.storage = due.storage
     )
     SELECT repository_id, replica_path, virtual_storage, relative_path, storage FROM due`,
    [options.verificationIntervalMs, options.batchSize, options.leaseDurationMs, virtualStorages, storages],
  );
  return rows.map((r) => ({
    repositoryId: toNumber(r.repository_id),
    replicaPath: r.replica_path ?? r.relative_path,
    virtualStorage: r.virtual_storage,
    relativePath: r.relative_path,
    storage: r.storage,
  }));
}

/**
 * Releases the leases of the given results, stamps verified_at on successful checks, and when
 * `deleteInvalidRecords` is set deletes the records of replicas found missing.
 */
export async function recordVerificationResults(
  db: Queryable,
  results: readonly VerificationResult[],
  deleteInvalidRecords: boolean,
): Promise<void> {
  if (results.length === 0) return;
  await db.query(
    `WITH results AS (
       SELECT r.repository_id, r.storage, r.succeeded, r.found
       FROM unnest($1::bigint[], $2::text[], $3::boolean[], $4::boolean[]) AS r (repository_id, storage, succeeded, found)
       JOIN (
         SELECT repository_id FROM repositories WHERE repository_id = ANY($1::bigint[]) FOR UPDATE
       ) AS locked USING (repository_id)
     ),
     released AS (
       UPDATE storage_repositories AS replica
       SET verification_leased_until = NULL,
           verified_at = CASE WHEN results.succeeded THEN now() ELSE replica.verified_at END
       FROM results
       WHERE replica.repository_id = results.repository_id AND replica.storage = results.storage
     )
     DELETE FROM storage_repositories AS replica
     USING results
     WHERE replica.repository_id = results.repository_id AND replica.storage = results.storage
       AND results.succeeded AND NOT results.found AND $5::boolean`,
    [
      results.map((r) => r.repositoryId),
      results.map((r) => r.storage),
      results.map((r) => r.succeeded),
      results.map((r) => r.exists),
      deleteInvalidRecords,
    ],
  );
}

/**
 * Clears leases that expired more than `leaseDurationMs` ago (their holder died), at most
 * `batchSize` per call. Returns the released replicas.
 */
export async function releaseExpiredLeases(
  db: Queryable,
  leaseDurationMs: number,
  batchSize: number,
): Promise<{ virtualStorage: string; relativePath: string; storage: string }[]> {
  const { rows } = await db.query<{ virtual_storage: string; relative_path: string; storage: string }>(
    `WITH expired AS (
       SELECT replica.repository_id, repo.virtual_storage, repo.relative_path, replica.storage
       FROM storage_repositories AS replica
       JOIN repositories AS repo USING (repository_id)
       WHERE replica.verification_leased_until < now() - $1 * interval '1 millisecond'
       LIMIT $2
       FOR NO KEY UPDATE OF replica SKIP LOCKED
     ),
     released AS (
       UPDATE storage_repositories AS replica
       SET verification_leased_until = NULL
       FROM expired
       WHERE replica.repository_id = expired.repository_id AND replica.storage = expired.storage
     )
     SELECT virtual_storage, relative_path, storage FROM expired`,
    [leaseDurationMs, batchSize],
  );
  return rows.map((r) => ({ virtualStorage: r.virtual_storage, relativePath: r.relative_path, storage: r.storage }));
}
