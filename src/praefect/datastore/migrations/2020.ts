// Migrations from 2020: the replication queue, the legacy election tables, repository
// generations and the change-notification trigger.
import type { Migration } from "./migration.js";

/** The replication queue's three tables; created idempotently because upstream re-added them once. */
function replicationQueueTables(ifNotExists: boolean): string[] {
  const create = ifNotExists ? "CREATE TABLE IF NOT EXISTS" : "CREATE TABLE";
  return [
    `${create} replication_queue_lock (
      id text PRIMARY KEY,
      acquired boolean NOT NULL DEFAULT false
    )`,
    `${create} replication_queue (
      id bigserial PRIMARY KEY,
      state replication_job_state NOT NULL DEFAULT 'ready',
      created_at timestamp without time zone NOT NULL DEFAULT (now() AT TIME ZONE 'UTC'),
      updated_at timestamp without time zone,
      attempt integer NOT NULL DEFAULT 3,
      lock_id text,
      job jsonb,
      meta jsonb
    )`,
    `${create} replication_queue_job_lock (
      job_id bigint REFERENCES replication_queue (id),
      lock_id text REFERENCES replication_queue_lock (id),
      triggered_at timestamp without time zone NOT NULL DEFAULT (now() AT TIME ZONE 'UTC'),
      CONSTRAINT replication_queue_job_lock_pk PRIMARY KEY (job_id, lock_id)
    )`,
  ];
}

const dropReplicationQueue = [
  "DROP TABLE IF EXISTS replication_queue_job_lock CASCADE",
  "DROP TABLE IF EXISTS replication_queue CASCADE",
  "DROP TABLE IF EXISTS replication_queue_lock CASCADE",
  "DROP TYPE IF EXISTS replication_job_state",
];

const jobStates = "'ready', 'in_progress', 'completed', 'cancelled', 'failed', 'dead'";

/** The first notification payload: the full old and new row sets of the statement. */
export const notifyOnChangeRowSets = `
CREATE OR REPLACE FUNCTION notify_on_change() RETURNS trigger LANGUAGE plpgsql AS $body$
DECLARE
  before_rows json := NULL;
  after_rows json := NULL;
BEGIN
  IF TG_OP IN ('UPDATE', 'DELETE') THEN
    SELECT json_agg(row_to_json(o.*)) INTO before_rows FROM old AS o;
  END IF;
  IF TG_OP IN ('INSERT', 'UPDATE') THEN
    SELECT json_agg(row_to_json(n.*)) INTO after_rows FROM new AS n;
  END IF;
  PERFORM pg_notify(TG_ARGV[TG_NARGS - 1], json_build_object('old', before_rows, 'new', after_rows)::text);
  RETURN NULL;
END
$body$`;

/**
 * The compact payload, one entry per virtual storage listing the touched relative paths:
 * [{"virtual_storage": "...", "relative_paths": ["..."]}]. `onlyRealChanges` limits updates
 * to rows whose generation or path changed, so verification bookkeeping does not flush caches.
 */
export function notifyOnChangeByPath(onlyRealChanges: boolean): string {
  const updateFilter = onlyRealChanges
    ? `WHERE coalesce(after_row.generation, -1) <> coalesce(before_row.generation, -1)
         OR after_row.relative_path <> before_row.relative_path`
    : "";
  return `
CREATE OR REPLACE FUNCTION notify_on_change() RETURNS trigger LANGUAGE plpgsql AS $body$
DECLARE
  payload jsonb;
BEGIN
  IF TG_OP = 'INSERT' THEN
    SELECT jsonb_agg(entry) INTO payload FROM (
      SELECT jsonb_build_object('virtual_storage', virtual_storage,
                                'relative_paths', array_agg(DISTINCT relative_path)) AS entry
      FROM new
      GROUP BY virtual_storage
    ) AS entries;
  ELSIF TG_OP = 'UPDATE' THEN
    SELECT jsonb_agg(entry) INTO payload FROM (
      SELECT jsonb_build_object('virtual_storage', virtual_storage,
                                'relative_paths', array_agg(DISTINCT relative_path)) AS entry
      FROM new AS after_row
      FULL JOIN old AS before_row USING (virtual_storage, relative_path)
      ${updateFilter}
      GROUP BY virtual_storage
    ) AS entries;
  ELSE
    SELECT jsonb_agg(entry) INTO payload FROM (
      SELECT jsonb_build_object('virtual_storage', virtual_storage,
                                'relative_paths', array_agg(DISTINCT relative_path)) AS entry
      FROM old
      GROUP BY virtual_storage
    ) AS entries;
  END IF;

  IF jsonb_array_length(payload) > 0 THEN
    PERFORM pg_notify(TG_ARGV[TG_NARGS - 1], payload::text);
  END IF;
  RETURN NULL;
END
$body$`;
}

export const migrations2020: readonly Migration[] = [
  {
    id: "20200109161404_hello_world",
    up: ["CREATE TABLE hello_world (id integer)"],
    down: ["DROP TABLE hello_world"],
  },
  {
    id: "20200113151438_1_test_migration",
    up: ["INSERT INTO hello_world (id) VALUES (1)"],
    down: ["DELETE FROM hello_world WHERE id = 1"],
  },
  {
    id: "20200224220728_job_queue",
    up: [`CREATE TYPE replication_job_state AS ENUM (${jobStates})`, ...replicationQueueTables(false)],
    down: dropReplicationQueue,
  },
  {
    id: "20200225220728_readd_job_queue",
    up: [
      `DO $body$
       BEGIN
         CREATE TYPE replication_job_state AS ENUM (${jobStates});
       EXCEPTION WHEN duplicate_object THEN
         NULL;
       END
       $body$`,
      ...replicationQueueTables(true),
    ],
    down: dropReplicationQueue,
  },
  {
    id: "20200324001604_add_sql_election_tables",
    up: [
      `CREATE TABLE node_status (
        id bigserial PRIMARY KEY,
        praefect_name varchar(511) NOT NULL,
        shard_name varchar(255) NOT NULL,
        node_name varchar(255) NOT NULL,
        last_contact_attempt_at timestamptz,
        last_seen_active_at timestamptz
      )`,
      "CREATE UNIQUE INDEX shard_node_names_on_node_status_idx ON node_status (praefect_name, shard_name, node_name)",
      "CREATE INDEX shard_name_on_node_status_idx ON node_status (shard_name, node_name)",
      `CREATE TABLE shard_primaries (
        id bigserial PRIMARY KEY,
        shard_name varchar(255) NOT NULL,
        node_name varchar(255) NOT NULL,
        elected_by_praefect varchar(255) NOT NULL,
        elected_at timestamptz NOT NULL
      )`,
      "CREATE UNIQUE INDEX shard_name_on_shard_primaries_idx ON shard_primaries (shard_name)",
    ],
    down: ["DROP TABLE shard_primaries", "DROP TABLE node_status"],
  },
  {
    id: "20200422131451_add_shard_read_only_column",
    up: [
      `ALTER TABLE shard_primaries
         ADD COLUMN read_only boolean NOT NULL DEFAULT false,
         ADD COLUMN demoted boolean NOT NULL DEFAULT false`,
    ],
    down: ["ALTER TABLE shard_primaries DROP COLUMN read_only, DROP COLUMN demoted"],
  },
  {
    id: "20200512131219_replication_job_indexing",
    up: [
      `CREATE INDEX IF NOT EXISTS virtual_target_on_replication_queue_idx
         ON replication_queue USING btree ((job ->> 'virtual_storage'), (job ->> 'target_node_storage'))`,
    ],
    down: ["DROP INDEX IF EXISTS virtual_target_on_replication_queue_idx"],
  },
  {
    id: "20200527103816_drop_old_gitaly_tables",
    up: [
      "DROP TABLE IF EXISTS gitaly_replication_queue_job_lock CASCADE",
      "DROP TABLE IF EXISTS gitaly_replication_queue CASCADE",
      "DROP TABLE IF EXISTS gitaly_replication_queue_lock CASCADE",
    ],
    down: [],
  },
  {
    id: "20200602154246_remember_previous_writable_primary",
    up: ["ALTER TABLE shard_primaries ADD COLUMN previous_writable_primary text"],
    down: ["ALTER TABLE shard_primaries DROP COLUMN previous_writable_primary"],
  },
  {
    id: "20200707101830_repositories_table",
    up: [
      `CREATE TABLE repositories (
        virtual_storage text,
        relative_path text,
        generation bigint NOT NULL,
        PRIMARY KEY (virtual_storage, relative_path)
      )`,
      `CREATE TABLE storage_repositories (
        virtual_storage text,
        relative_path text,
        storage text,
        generation bigint NOT NULL,
        PRIMARY KEY (virtual_storage, relative_path, storage)
      )`,
    ],
    down: ["DROP TABLE storage_repositories", "DROP TABLE repositories"],
  },
  {
    id: "20200810055650_replication_queue_cleanup",
    up: ["DELETE FROM replication_queue WHERE state IN ('dead', 'completed')"],
    down: [],
  },
  {
    id: "20200921154417_repositories_nullable_generation",
    up: ["ALTER TABLE repositories ALTER COLUMN generation DROP NOT NULL"],
    down: [],
  },
  {
    id: "20200921170311_repositories_primary_column",
    up: [`ALTER TABLE repositories ADD COLUMN "primary" text`],
    down: [`ALTER TABLE repositories DROP COLUMN "primary"`],
  },
  {
    id: "20201006125956_trigger_repository_update_generation",
    up: [
      notifyOnChangeRowSets,
      `CREATE TRIGGER notify_on_delete AFTER DELETE ON repositories
         REFERENCING OLD TABLE AS old
         FOR EACH STATEMENT EXECUTE FUNCTION notify_on_change('repositories_updates')`,
      `CREATE TRIGGER notify_on_insert AFTER INSERT ON storage_repositories
         REFERENCING NEW TABLE AS new
         FOR EACH STATEMENT EXECUTE FUNCTION notify_on_change('storage_repositories_updates')`,
      `CREATE TRIGGER notify_on_update AFTER UPDATE ON storage_repositories
         REFERENCING OLD TABLE AS old NEW TABLE AS new
         FOR EACH STATEMENT EXECUTE FUNCTION notify_on_change('storage_repositories_updates')`,
      `CREATE TRIGGER notify_on_delete AFTER DELETE ON storage_repositories
         REFERENCING OLD TABLE AS old
         FOR EACH STATEMENT EXECUTE FUNCTION notify_on_change('storage_repositories_updates')`,
    ],
    down: [
      "DROP TRIGGER IF EXISTS notify_on_delete ON repositories",
      "DROP TRIGGER IF EXISTS notify_on_insert ON storage_repositories",
      "DROP TRIGGER IF EXISTS notify_on_update ON storage_repositories",
      "DROP TRIGGER IF EXISTS notify_on_delete ON storage_repositories",
      "DROP FUNCTION IF EXISTS notify_on_change",
    ],
  },
  {
    id: "20201102115118_variable_replication_factor",
    up: ["ALTER TABLE storage_repositories ADD COLUMN assigned boolean NOT NULL DEFAULT true"],
    down: ["ALTER TABLE storage_repositories DROP COLUMN assigned"],
  },
  {
    id: "20201102171914_virtual_storage_configuration",
    up: [
      `CREATE TABLE virtual_storages (
        virtual_storage text PRIMARY KEY,
        repositories_imported boolean NOT NULL DEFAULT false
      )`,
    ],
    down: ["DROP TABLE virtual_storages"],
  },
  {
    id: "20201126165633_repository_assignments_table",
    up: [
      `CREATE TABLE repository_assignments (
        virtual_storage text,
        relative_path text,
        storage text,
        PRIMARY KEY (virtual_storage, relative_path, storage),
        CONSTRAINT repository_assignments_virtual_storage_relative_path_fkey
          FOREIGN KEY (virtual_storage, relative_path) REFERENCES repositories
          ON UPDATE CASCADE ON DELETE CASCADE
      )`,
    ],
    down: ["DROP TABLE repository_assignments"],
  },
  {
    id: "20201208163237_cleanup_notifiactions_payload",
    up: [notifyOnChangeByPath(false)],
    down: [notifyOnChangeRowSets],
  },
  {
    id: "20201231075619_remove_unused_assigned_column",
    up: ["ALTER TABLE storage_repositories DROP COLUMN assigned"],
    down: ["ALTER TABLE storage_repositories ADD COLUMN assigned boolean NOT NULL DEFAULT true"],
  },
];
