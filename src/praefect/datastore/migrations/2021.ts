// Migrations from 2021: health consensus and primary-candidate views, repository IDs and
// replica paths, and the indexes the queue and lookups rely on.
import type { Migration } from "./migration.js";

/** The job is an unfinished delete_replica job; shared by the valid_primaries versions. */
const pendingDeleteReplica = `state NOT IN ('completed', 'dead', 'cancelled')
          AND job ->> 'change' = 'delete_replica'`;

/** valid_primaries as first written: a CTE and a NOT EXISTS over assigned candidates. */
const validPrimariesV1 = `
CREATE OR REPLACE VIEW valid_primaries AS
  WITH candidates AS (
    SELECT virtual_storage, relative_path, storage,
           repository_assignments.storage IS NOT NULL AS assigned
    FROM storage_repositories
    JOIN repository_generations USING (virtual_storage, relative_path, generation)
    JOIN healthy_storages USING (virtual_storage, storage)
    LEFT JOIN repository_assignments USING (virtual_storage, relative_path, storage)
    WHERE NOT EXISTS (
      -- a replica about to be deleted must not become primary: it would lose the writes it takes
      SELECT true FROM replication_queue
      WHERE ${pendingDeleteReplica}
        AND job ->> 'virtual_storage' = virtual_storage
        AND job ->> 'relative_path' = relative_path
        AND job ->> 'target_node_storage' = storage
    )
  )
  SELECT virtual_storage, relative_path, storage
  FROM candidates
  WHERE assigned OR (
    SELECT NOT EXISTS (
      SELECT FROM candidates AS assigned_candidates
      WHERE assigned
        AND assigned_candidates.virtual_storage = candidates.virtual_storage
        AND assigned_candidates.relative_path = candidates.relative_path
    )
  )`;

/** valid_primaries with a window function instead of the self-reference. */
function validPrimariesWindowed(withRepositoryId: boolean): string {
  const idColumn = withRepositoryId ? "repository_id, " : "";
  const innerIdColumn = withRepositoryId ? "storage_repositories.repository_id,\n           " : "";
  return `
  SELECT ${idColumn}virtual_storage, relative_path, storage
  FROM (
    SELECT ${innerIdColumn}virtual_storage,
           relative_path,
           storage,
           repository_assignments.storage IS NOT NULL
             OR bool_and(repository_assignments.storage IS NULL)
                  OVER (PARTITION BY virtual_storage, relative_path) AS eligible
    FROM storage_repositories
    JOIN repository_generations USING (virtual_storage, relative_path, generation)
    JOIN healthy_storages USING (virtual_storage, storage)
    LEFT JOIN repository_assignments USING (virtual_storage, relative_path, storage)
    WHERE NOT EXISTS (
      SELECT FROM replication_queue
      WHERE ${pendingDeleteReplica}
        AND job ->> 'virtual_storage' = virtual_storage
        AND job ->> 'relative_path' = relative_path
        AND job ->> 'target_node_storage' = storage
    )
  ) AS candidates
  WHERE eligible`;
}

/** The current valid_primaries: joins on repository_id and compares with repositories.generation. */
const validPrimariesByRepositoryId = `
CREATE OR REPLACE VIEW valid_primaries AS
  SELECT repository_id, virtual_storage, relative_path, storage
  FROM (
    SELECT repository_id,
           repositories.virtual_storage,
           repositories.relative_path,
           storage,
           repository_assignments.storage IS NOT NULL
             OR bool_and(repository_assignments.storage IS NULL) OVER (PARTITION BY repository_id) AS eligible
    FROM repositories
    JOIN (SELECT repository_id, storage, generation FROM storage_repositories) AS storage_repositories
      USING (repository_id, generation)
    JOIN healthy_storages USING (virtual_storage, storage)
    LEFT JOIN repository_assignments USING (repository_id, storage)
    WHERE NOT EXISTS (
      SELECT FROM replication_queue
      WHERE ${pendingDeleteReplica}
        AND (job ->> 'repository_id')::bigint = repository_id
        AND job ->> 'target_node_storage' = storage
    )
  ) AS candidates
  WHERE eligible`;

export const migrations2021: readonly Migration[] = [
  {
    id: "20210223130233_delete_replica_unique_index",
    up: [
      `CREATE UNIQUE INDEX CONCURRENTLY delete_replica_unique_index
         ON replication_queue ((job ->> 'virtual_storage'), (job ->> 'relative_path'))
         WHERE state NOT IN ('completed', 'cancelled', 'dead')
           AND job ->> 'change' = 'delete_replica'`,
    ],
    down: ["DROP INDEX delete_replica_unique_index"],
    upWithoutTransaction: true,
  },
  {
    // The file upstream is named ..._extend_replication_queue_target_index, but this is the recorded ID.
    id: "20210225101159_replication_queue_target_index",
    up: [
      `CREATE INDEX CONCURRENTLY replication_queue_target_index
         ON replication_queue (
           (job ->> 'virtual_storage'),
           (job ->> 'relative_path'),
           (job ->> 'target_node_storage'),
           (job ->> 'change')
         )
         WHERE state NOT IN ('completed', 'cancelled', 'dead')`,
    ],
    down: ["DROP INDEX replication_queue_target_index"],
    upWithoutTransaction: true,
  },
  {
    id: "20210525143540_healthy_storages_view",
    up: [
      // Healthy means: seen active in the last 10 s by at least half (rounded up) of the
      // Praefects that tried to reach this virtual storage in the last minute.
      `CREATE VIEW healthy_storages AS
        SELECT shard_name AS virtual_storage, node_name AS storage
        FROM node_status AS ns
        WHERE last_seen_active_at >= now() - interval '10 seconds'
        GROUP BY shard_name, node_name
        HAVING count(praefect_name) >= (
          SELECT ceil(count(DISTINCT praefect_name) / 2.0) AS quorum_count
          FROM node_status
          WHERE shard_name = ns.shard_name
            AND last_contact_attempt_at >= now() - interval '60 seconds'
        )
        ORDER BY shard_name, node_name`,
    ],
    down: ["DROP VIEW healthy_storages"],
  },
  {
    id: "20210525173505_valid_primaries_view",
    up: [
      `CREATE VIEW repository_generations AS
        SELECT virtual_storage, relative_path, max(generation) AS generation
        FROM storage_repositories
        GROUP BY virtual_storage, relative_path`,
      validPrimariesV1,
    ],
    down: ["DROP VIEW valid_primaries", "DROP VIEW repository_generations"],
  },
  {
    id: "20210607124235_optimize_valid_primaries_view",
    up: [`CREATE OR REPLACE VIEW valid_primaries AS ${validPrimariesWindowed(false)}`],
    down: [validPrimariesV1],
  },
  {
    id: "20210727085659_repository_ids",
    up: [
      "CREATE UNIQUE INDEX repository_lookup_index ON repositories (virtual_storage, relative_path)",
      // Older PostgreSQL versions named the composite foreign key after its first column only.
      "ALTER TABLE repository_assignments DROP CONSTRAINT IF EXISTS repository_assignments_virtual_storage_relative_path_fkey",
      "ALTER TABLE repository_assignments DROP CONSTRAINT IF EXISTS repository_assignments_virtual_storage_fkey",
      "ALTER TABLE repositories DROP CONSTRAINT repositories_pkey",
      `ALTER TABLE repository_assignments
         ADD CONSTRAINT repository_assignments_virtual_storage_relative_path_fkey
         FOREIGN KEY (virtual_storage, relative_path) REFERENCES repositories (virtual_storage, relative_path)
         ON UPDATE CASCADE ON DELETE CASCADE`,
      "ALTER TABLE repositories ADD COLUMN repository_id bigserial PRIMARY KEY",
      `ALTER TABLE repository_assignments
         ADD COLUMN repository_id bigint REFERENCES repositories (repository_id) ON DELETE CASCADE`,
      `ALTER TABLE storage_repositories
         ADD COLUMN repository_id bigint REFERENCES repositories (repository_id) ON DELETE SET NULL`,
    ],
    down: [
      "ALTER TABLE storage_repositories DROP COLUMN repository_id",
      "ALTER TABLE repository_assignments DROP COLUMN repository_id",
      "ALTER TABLE repositories DROP COLUMN repository_id",
      "CREATE UNIQUE INDEX repositories_pkey ON repositories (virtual_storage, relative_path)",
      "ALTER TABLE repositories ADD PRIMARY KEY USING INDEX repositories_pkey",
      "ALTER TABLE repository_assignments DROP CONSTRAINT repository_assignments_virtual_storage_relative_path_fkey",
      "DROP INDEX repository_lookup_index",
      `ALTER TABLE repository_assignments
         ADD CONSTRAINT repository_assignments_virtual_storage_relative_path_fkey
         FOREIGN KEY (virtual_storage, relative_path) REFERENCES repositories (virtual_storage, relative_path)
         ON UPDATE CASCADE ON DELETE CASCADE`,
    ],
  },
  {
    id: "20210906130405_add_replica_path",
    up: ["ALTER TABLE repositories ADD COLUMN replica_path text"],
    down: ["ALTER TABLE repositories DROP COLUMN replica_path"],
  },
  {
    id: "20210906145021_link_repository_id",
    up: [
      // Backfilling IDs is not a change readers care about; keep it from flooding the caches.
      "ALTER TABLE storage_repositories DISABLE TRIGGER notify_on_update",
      `UPDATE storage_repositories AS replica
         SET repository_id = repo.repository_id
         FROM repositories AS repo
         WHERE replica.virtual_storage = repo.virtual_storage
           AND replica.relative_path = repo.relative_path`,
      `UPDATE repository_assignments AS assignment
         SET repository_id = repo.repository_id
         FROM repositories AS repo
         WHERE assignment.virtual_storage = repo.virtual_storage
           AND assignment.relative_path = repo.relative_path`,
      "ALTER TABLE storage_repositories ENABLE TRIGGER notify_on_update",
    ],
    down: [],
  },
  {
    id: "20210914115710_storage_cleanups_table",
    up: [
      `CREATE TABLE storage_cleanups (
        virtual_storage text NOT NULL,
        storage text NOT NULL,
        last_run timestamp without time zone,
        triggered_at timestamp without time zone,
        PRIMARY KEY (virtual_storage, storage)
      )`,
    ],
    down: ["DROP TABLE storage_cleanups"],
  },
  {
    id: "20210921131816_backfill_replica_path",
    up: ["UPDATE repositories SET replica_path = relative_path"],
    down: [],
  },
  {
    id: "20210922091614_repository_id_primary_key_indexes",
    up: [
      "CREATE UNIQUE INDEX repository_assignments_new_pkey ON repository_assignments (repository_id, storage)",
      "CREATE UNIQUE INDEX storage_repositories_new_pkey ON storage_repositories (repository_id, storage)",
    ],
    down: ["DROP INDEX repository_assignments_new_pkey", "DROP INDEX storage_repositories_new_pkey"],
  },
  {
    id: "20210922143752_storage_repositories_cascade_delete",
    up: [
      "ALTER TABLE storage_repositories DROP CONSTRAINT storage_repositories_repository_id_fkey",
      `ALTER TABLE storage_repositories
         ADD CONSTRAINT storage_repositories_repository_id_fkey
         FOREIGN KEY (repository_id) REFERENCES repositories (repository_id) ON DELETE CASCADE`,
    ],
    down: [
      "ALTER TABLE storage_repositories DROP CONSTRAINT storage_repositories_repository_id_fkey",
      `ALTER TABLE storage_repositories
         ADD CONSTRAINT storage_repositories_repository_id_fkey
         FOREIGN KEY (repository_id) REFERENCES repositories (repository_id) ON DELETE SET NULL`,
    ],
  },
  {
    id: "20210923155827_valid_primaries_view_repository_id",
    // CREATE OR REPLACE cannot add a leading column to a view, so it is dropped and recreated.
    up: ["DROP VIEW valid_primaries", `CREATE VIEW valid_primaries AS ${validPrimariesWindowed(true)}`],
    down: ["DROP VIEW valid_primaries", `CREATE VIEW valid_primaries AS ${validPrimariesWindowed(false)}`],
  },
  {
    id: "20210927083631_repository_path_index",
    up: ["CREATE INDEX CONCURRENTLY repository_replica_path_index ON repositories (replica_path, virtual_storage)"],
    down: ["DROP INDEX repository_replica_path_index"],
    upWithoutTransaction: true,
  },
  {
    id: "20211018142158_valid_primaries_view_join_repo_id",
    up: [validPrimariesByRepositoryId],
    down: [`CREATE OR REPLACE VIEW valid_primaries AS ${validPrimariesWindowed(true)}`],
  },
  {
    id: "20211025113445_remove_cancelled_replication_events",
    up: ["DELETE FROM replication_queue WHERE state = 'cancelled'"],
    down: [],
  },
  {
    id: "20211105100456_check_non_null_repository_id",
    up: [
      // Unvalidated, so adding it is instant; it stops new NULLs while the next migration cleans up.
      "ALTER TABLE storage_repositories ADD CONSTRAINT repository_id_not_null CHECK (repository_id IS NOT NULL) NOT VALID",
      "ALTER TABLE repository_assignments ADD CONSTRAINT repository_id_not_null CHECK (repository_id IS NOT NULL) NOT VALID",
    ],
    down: [
      "ALTER TABLE storage_repositories DROP CONSTRAINT repository_id_not_null",
      "ALTER TABLE repository_assignments DROP CONSTRAINT repository_id_not_null",
    ],
  },
  {
    id: "20211105100458_non_nullable_repository_id",
    up: [
      // Orphaned replica rows belong to repositories already deleted (and already announced),
      // so removing them needs no cache invalidation.
      "ALTER TABLE storage_repositories DISABLE TRIGGER notify_on_delete",
      "DELETE FROM storage_repositories WHERE repository_id IS NULL",
      "ALTER TABLE storage_repositories ENABLE TRIGGER notify_on_delete",
      "ALTER TABLE storage_repositories ALTER COLUMN repository_id SET NOT NULL",
      "ALTER TABLE repository_assignments ALTER COLUMN repository_id SET NOT NULL",
      "ALTER TABLE storage_repositories DROP CONSTRAINT repository_id_not_null",
      "ALTER TABLE repository_assignments DROP CONSTRAINT repository_id_not_null",
    ],
    down: [
      "ALTER TABLE repository_assignments ADD CONSTRAINT repository_id_not_null CHECK (repository_id IS NOT NULL) NOT VALID",
      "ALTER TABLE storage_repositories ADD CONSTRAINT repository_id_not_null CHECK (repository_id IS NOT NULL) NOT VALID",
      "ALTER TABLE storage_repositories ALTER COLUMN repository_id DROP NOT NULL",
      "ALTER TABLE repository_assignments ALTER COLUMN repository_id DROP NOT NULL",
    ],
  },
];
