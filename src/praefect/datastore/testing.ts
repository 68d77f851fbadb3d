// Helpers for tests that need database state set up directly: node health as several
// Praefects reported it, with timestamps chosen by the test instead of waited for.
import type { Queryable } from "./db.js";

export interface NodeReport {
  praefect: string;
  virtualStorage: string;
  storage: string;
  /** Seconds ago the Praefect last tried to reach the node (null: never). */
  contactedSecondsAgo: number | null;
  /** Seconds ago the Praefect last saw the node healthy (null: never). */
  seenActiveSecondsAgo: number | null;
}

/** Upserts node_status rows as if the given Praefects had reported them at the given ages. */
export async function reportNodes(db: Queryable, reports: readonly NodeReport[]): Promise<void> {
  for (const r of reports) {
    await db.query(
      `INSERT INTO node_status (praefect_name, shard_name, node_name, last_contact_attempt_at, last_seen_active_at)
       VALUES ($1, $2, $3,
               CASE WHEN $4::float8 IS NULL THEN NULL ELSE now() - $4::float8 * interval '1 second' END,
               CASE WHEN $5::float8 IS NULL THEN NULL ELSE now() - $5::float8 * interval '1 second' END)
       ON CONFLICT (praefect_name, shard_name, node_name) DO UPDATE
         SET last_contact_attempt_at = EXCLUDED.last_contact_attempt_at,
             last_seen_active_at = EXCLUDED.last_seen_active_at`,
      [r.praefect, r.virtualStorage, r.storage, r.contactedSecondsAgo, r.seenActiveSecondsAgo],
    );
  }
}

/** Makes `storages` healthy (and every other node of the virtual storage unhealthy) by one Praefect's fresh report. */
export async function setHealthy(
  db: Queryable,
  virtualStorage: string,
  healthy: readonly string[],
  unhealthy: readonly string[] = [],
  praefect = "praefect-0",
): Promise<void> {
  await reportNodes(db, [
    ...healthy.map((storage) => ({
      praefect,
      virtualStorage,
      storage,
      contactedSecondsAgo: 0,
      seenActiveSecondsAgo: 0,
    })),
    ...unhealthy.map((storage) => ({
      praefect,
      virtualStorage,
      storage,
      contactedSecondsAgo: 0,
      seenActiveSecondsAgo: null,
    })),
  ]);
}
