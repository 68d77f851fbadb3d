import { existsSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import pg from "pg";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { freshDatabase, type TestDatabase } from "../../../test/harness/postgres.js";
import { UnknownMigrationError } from "./errors.js";
import {
  allMigrations,
  compareMigrationIds,
  type Migration,
  migrate,
  migrateDown,
  migrationStatus,
  planMigrateDown,
  planMigrations,
  unknownAppliedMigrations,
} from "./migrate.js";
import { loadSchemaDump, type SchemaFingerprint, schemaFingerprint } from "./schema-fingerprint.js";

const upstreamIds = [
  "20200109161404_hello_world",
  "20200113151438_1_test_migration",
  "20200224220728_job_queue",
  "20200225220728_readd_job_queue",
  "20200324001604_add_sql_election_tables",
  "20200422131451_add_shard_read_only_column",
  "20200512131219_replication_job_indexing",
  "20200527103816_drop_old_gitaly_tables",
  "20200602154246_remember_previous_writable_primary",
  "20200707101830_repositories_table",
  "20200810055650_replication_queue_cleanup",
  "20200921154417_repositories_nullable_generation",
  "20200921170311_repositories_primary_column",
  "20201006125956_trigger_repository_update_generation",
  "20201102115118_variable_replication_factor",
  "20201102171914_virtual_storage_configuration",
  "20201126165633_repository_assignments_table",
  "20201208163237_cleanup_notifiactions_payload",
  "20201231075619_remove_unused_assigned_column",
  "20210223130233_delete_replica_unique_index",
  "20210225101159_replication_queue_target_index",
  "20210525143540_healthy_storages_view",
  "20210525173505_valid_primaries_view",
  "20210607124235_optimize_valid_primaries_view",
  "20210727085659_repository_ids",
  "20210906130405_add_replica_path",
  "20210906145021_link_repository_id",
  "20210914115710_storage_cleanups_table",
  "20210921131816_backfill_replica_path",
  "20210922091614_repository_id_primary_key_indexes",
  "20210922143752_storage_repositories_cascade_delete",
  "20210923155827_valid_primaries_view_repository_id",
  "20210927083631_repository_path_index",
  "20211018142158_valid_primaries_view_join_repo_id",
  "20211025113445_remove_cancelled_replication_events",
  "20211105100456_check_non_null_repository_id",
  "20211105100458_non_nullable_repository_id",
  "20220215160117_replication_queue_cleanup_again",
  "20220303105110_background_verification_columns",
  "20220404131105_stale_verification_lease_index",
  "20220407111624_ignore_verification_in_triggers",
  "20220520083313_remove_maintenance_replication_events",
  "20260224025459_repo_write_locks",
];

const upstreamFingerprintFile = join(import.meta.dirname, "testdata", "upstream-schema.json");

/**
 * The committed fingerprint was derived from upstream's _support/praefect-schema.sql. Setting
 * PRAEFECT_UPSTREAM_SCHEMA_SQL to that file regenerates it (see testdata/README.md).
 */
async function upstreamFingerprint(): Promise<SchemaFingerprint> {
  const dumpFile = process.env.PRAEFECT_UPSTREAM_SCHEMA_SQL;
  if (dumpFile && existsSync(dumpFile)) {
    const db = await freshDatabase("upstream_schema");
    try {
      const client = new pg.Client({ connectionString: db.url });
      await client.connect();
      try {
        await loadSchemaDump(client, readFileSync(dumpFile, "utf8"));
      } finally {
        await client.end();
      }
      const fingerprint = await schemaFingerprint(db.pool);
      writeFileSync(upstreamFingerprintFile, `${JSON.stringify(fingerprint, null, 2)}\n`);
    } finally {
      await db.drop();
    }
  }
  return JSON.parse(readFileSync(upstreamFingerprintFile, "utf8")) as SchemaFingerprint;
}

async function publicRelations(pool: pg.Pool): Promise<string[]> {
  const { rows } = await pool.query<{ name: string }>(
    `SELECT c.relname AS name FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
     WHERE n.nspname = 'public' AND c.relkind IN ('r', 'v', 'S') ORDER BY 1`,
  );
  return rows.map((r) => r.name);
}

describe("schema migrations", () => {
  let db: TestDatabase;

  beforeAll(async () => {
    db = await freshDatabase("migrate");
  });
  afterAll(async () => {
    await db?.drop();
  });

  it("has upstream's migration IDs in order", () => {
    // Upstream has 43 migrations; the recorded ID of 20210225101159 differs from its file name.
    expect(allMigrations.map((m) => m.id)).toEqual(upstreamIds);
    expect([...upstreamIds].sort(compareMigrationIds)).toEqual(upstreamIds);
  });

  it("migrates an empty database to upstream's final schema", async () => {
    const applied = await migrate(db.pool);
    expect(applied).toEqual(allMigrations.map((m) => m.id));

    const status = await migrationStatus(db.pool);
    expect(status.map((s) => s.id)).toEqual(allMigrations.map((m) => m.id));
    expect(status.every((s) => s.appliedAt instanceof Date && !s.unknown)).toBe(true);

    expect(await schemaFingerprint(db.pool)).toEqual(await upstreamFingerprint());
  });

  it("applies nothing to an already migrated database", async () => {
    expect(await planMigrations(db.pool)).toEqual([]);
    expect(await migrate(db.pool)).toEqual([]);
  });

  it("refuses unknown applied migrations unless told to ignore them", async () => {
    await db.pool.query(
      "INSERT INTO schema_migrations (id, applied_at) VALUES ('29990101000000_from_the_future', now())",
    );
    try {
      expect(await unknownAppliedMigrations(db.pool)).toEqual(["29990101000000_from_the_future"]);
      await expect(migrate(db.pool)).rejects.toThrow(UnknownMigrationError);
      await expect(migrate(db.pool)).rejects.toThrow(/29990101000000_from_the_future: unknown migration in database/);
      expect(await migrate(db.pool, { ignoreUnknown: true })).toEqual([]);
      const status = await migrationStatus(db.pool);
      expect(status.at(-1)).toMatchObject({ id: "29990101000000_from_the_future", unknown: true });
      await expect(migrateDown(db.pool, 1)).rejects.toThrow(UnknownMigrationError);
    } finally {
      await db.pool.query("DELETE FROM schema_migrations WHERE id = '29990101000000_from_the_future'");
    }
  });

  it("reverts every migration and migrates up again to the same schema", async () => {
    const plan = await planMigrateDown(db.pool, 2);
    expect(plan.map((m) => m.id)).toEqual([
      "20260224025459_repo_write_locks",
      "20220520083313_remove_maintenance_replication_events",
    ]);

    const reverted = await migrateDown(db.pool, 1000);
    expect(reverted).toEqual(allMigrations.map((m) => m.id).reverse());
    expect(await publicRelations(db.pool)).toEqual(["schema_migrations"]);
    expect((await migrationStatus(db.pool)).every((s) => s.appliedAt === null)).toBe(true);

    expect(await migrate(db.pool)).toEqual(upstreamIds);
    expect(await schemaFingerprint(db.pool)).toEqual(await upstreamFingerprint());
  });

  it("stops at a given migration and continues from there", async () => {
    const partial = await freshDatabase("migrate_partial");
    try {
      const to = "20210727085659_repository_ids";
      const first = await migrate(partial.pool, { to });
      expect(first.at(-1)).toBe(to);
      const rest = await migrate(partial.pool);
      expect([...first, ...rest]).toEqual(allMigrations.map((m) => m.id));
    } finally {
      await partial.drop();
    }
  });

  it("carries existing data through the repository ID and replica path migrations", async () => {
    const legacy = await freshDatabase("migrate_data");
    try {
      await migrate(legacy.pool, { to: "20210607124235_optimize_valid_primaries_view" });
      await legacy.pool.query(`
        INSERT INTO repositories (virtual_storage, relative_path, generation) VALUES ('vs', 'a.git', 1), ('vs', 'b.git', 0);
        INSERT INTO storage_repositories (virtual_storage, relative_path, storage, generation)
          VALUES ('vs', 'a.git', 's1', 1), ('vs', 'a.git', 's2', 0), ('vs', 'b.git', 's1', 0),
                 ('vs', 'gone.git', 's1', 3);
        INSERT INTO repository_assignments (virtual_storage, relative_path, storage) VALUES ('vs', 'a.git', 's1');
      `);
      await migrate(legacy.pool);

      const repos = await legacy.pool.query<{ relative_path: string; replica_path: string; repository_id: string }>(
        "SELECT relative_path, replica_path, repository_id FROM repositories ORDER BY relative_path",
      );
      expect(repos.rows.map((r) => [r.relative_path, r.replica_path])).toEqual([
        ["a.git", "a.git"],
        ["b.git", "b.git"],
      ]);
      const idOf = new Map(repos.rows.map((r) => [r.relative_path, r.repository_id]));
      const replicas = await legacy.pool.query<{ relative_path: string; storage: string; repository_id: string }>(
        "SELECT relative_path, storage, repository_id FROM storage_repositories ORDER BY relative_path, storage",
      );
      // The replica of a repository that no longer exists is dropped.
      expect(replicas.rows).toEqual([
        { relative_path: "a.git", storage: "s1", repository_id: idOf.get("a.git") },
        { relative_path: "a.git", storage: "s2", repository_id: idOf.get("a.git") },
        { relative_path: "b.git", storage: "s1", repository_id: idOf.get("b.git") },
      ]);
      const assignments = await legacy.pool.query("SELECT repository_id FROM repository_assignments");
      expect(assignments.rows).toEqual([{ repository_id: idOf.get("a.git") }]);
    } finally {
      await legacy.drop();
    }
  });

  it("lets concurrent migrators apply each migration exactly once", async () => {
    const raced = await freshDatabase("migrate_race");
    try {
      const [a, b] = await Promise.all([migrate(raced.pool), migrate(raced.pool)]);
      expect([...a, ...b].sort(compareMigrationIds)).toEqual(allMigrations.map((m) => m.id));
    } finally {
      await raced.drop();
    }
  });

  it("catches up on a migration missing below the newest applied one, like sql-migrate", async () => {
    const scratch = await freshDatabase("migrate_catchup");
    const fake = (id: string, table: string): Migration => ({
      id,
      up: [`CREATE TABLE ${table} (id int)`],
      down: [`DROP TABLE ${table}`],
    });
    const set = [fake("1_one", "t_one"), fake("2_two", "t_two"), fake("3_three", "t_three")];
    try {
      await migrate(scratch.pool, { migrations: [set[0] as Migration, set[2] as Migration] });
      const plan = await planMigrations(scratch.pool, { migrations: set });
      expect(plan.map((m) => m.id)).toEqual(["2_two"]);
      expect(await migrate(scratch.pool, { migrations: set })).toEqual(["2_two"]);
      expect(await migrateDown(scratch.pool, 2, set)).toEqual(["3_three", "2_two"]);
    } finally {
      await scratch.drop();
    }
  });

  it("rolls back a failing migration and does not record it", async () => {
    const scratch = await freshDatabase("migrate_fail");
    const set: Migration[] = [
      { id: "1_ok", up: ["CREATE TABLE ok_table (id int)"], down: ["DROP TABLE ok_table"] },
      { id: "2_bad", up: ["CREATE TABLE half_done (id int)", "SELECT no_such_function()"], down: [] },
    ];
    try {
      await expect(migrate(scratch.pool, { migrations: set })).rejects.toThrow(/migration 2_bad \(up\) failed/);
      const status = await migrationStatus(scratch.pool, set);
      expect(status.map((s) => [s.id, s.appliedAt !== null])).toEqual([
        ["1_ok", true],
        ["2_bad", false],
      ]);
      expect(await publicRelations(scratch.pool)).toEqual(["ok_table", "schema_migrations"]);
    } finally {
      await scratch.drop();
    }
  });
});
