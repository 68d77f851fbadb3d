// Migrations from 2022 and later: background verification, quieter triggers, removal of
// obsolete maintenance jobs, and reference write locks.
import { notifyOnChangeByPath } from "./2020.js";
import type { Migration } from "./migration.js";

/** The job changes of the maintenance jobs Praefect no longer replicates. */
const maintenanceChanges = [
  "gc",
  "repack_full",
  "repack_incremental",
  "cleanup",
  "pack_refs",
  "write_commit_graph",
  "midx_repack",
  "optimize_repository",
  "prune_unreachable_objects",
]
  .map((change) => `'${change}'`)
  .join(", ");

export const migrations2022: readonly Migration[] = [
  {
    id: "20220215160117_replication_queue_cleanup_again",
    up: ["DELETE FROM replication_queue WHERE state IN ('dead', 'completed')"],
    down: [],
  },
  {
    id: "20220303105110_background_verification_columns",
    up: [
      "ALTER TABLE storage_repositories ADD COLUMN verified_at timestamptz",
      "ALTER TABLE storage_repositories ADD COLUMN verification_leased_until timestamptz",
      `CREATE INDEX verification_queue ON storage_repositories (verified_at NULLS FIRST)
         WHERE verification_leased_until IS NULL`,
    ],
    down: [
      "DROP INDEX verification_queue",
      "ALTER TABLE storage_repositories DROP COLUMN verification_leased_until",
      "ALTER TABLE storage_repositories DROP COLUMN verified_at",
    ],
  },
  {
    id: "20220404131105_stale_verification_lease_index",
    up: [
      `CREATE INDEX verification_leases ON storage_repositories (verification_leased_until)
         WHERE verification_leased_until IS NOT NULL`,
    ],
    down: ["DROP INDEX verification_leases"],
  },
  {
    id: "20220407111624_ignore_verification_in_triggers",
    up: [notifyOnChangeByPath(true)],
    down: [notifyOnChangeByPath(false)],
  },
  {
    id: "20220520083313_remove_maintenance_replication_events",
    up: [
      // Job locks reference their jobs, so they go first; a repository lock is released only
      // when every job lock it had belonged to a removed job (as AcknowledgeStale does).
      `WITH maintenance AS (
         SELECT id FROM replication_queue WHERE job ->> 'change' IN (${maintenanceChanges})
       ),
       removed_job_locks AS (
         DELETE FROM replication_queue_job_lock
         WHERE job_id IN (SELECT id FROM maintenance)
         RETURNING lock_id
       ),
       removed_jobs AS (
         DELETE FROM replication_queue WHERE id IN (SELECT id FROM maintenance)
       )
       UPDATE replication_queue_lock
       SET acquired = false
       WHERE id IN (
         SELECT removed.lock_id
         FROM (SELECT lock_id, count(*) AS n FROM removed_job_locks GROUP BY lock_id) AS removed
         JOIN (
           SELECT lock_id, count(*) AS n
           FROM replication_queue_job_lock
           WHERE lock_id IN (SELECT lock_id FROM removed_job_locks)
           GROUP BY lock_id
         ) AS held ON held.lock_id = removed.lock_id AND held.n = removed.n
       )`,
    ],
    down: [],
  },
  {
    id: "20260224025459_repo_write_locks",
    up: [
      `CREATE TABLE repository_reference_write_locks (
        lock_id text PRIMARY KEY,
        holder_txn_id bigint NOT NULL,
        expired_at timestamptz NOT NULL
      )`,
      "CREATE INDEX repository_reference_write_locks_expired_at_idx ON repository_reference_write_locks (expired_at)",
      `CREATE OR REPLACE FUNCTION notify_on_write_lock_release() RETURNS trigger LANGUAGE plpgsql AS $body$
       BEGIN
         PERFORM pg_notify('repository_reference_write_lock_releases', OLD.lock_id);
         RETURN NULL;
       END
       $body$`,
      `CREATE TRIGGER notify_on_write_lock_delete AFTER DELETE ON repository_reference_write_locks
         FOR EACH ROW EXECUTE FUNCTION notify_on_write_lock_release()`,
    ],
    down: [
      "DROP TRIGGER IF EXISTS notify_on_write_lock_delete ON repository_reference_write_locks",
      "DROP FUNCTION IF EXISTS notify_on_write_lock_release",
      "DROP INDEX IF EXISTS repository_reference_write_locks_expired_at_idx",
      "DROP TABLE repository_reference_write_locks",
    ],
  },
];
