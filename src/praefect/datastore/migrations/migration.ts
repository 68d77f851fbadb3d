// The shape of one schema migration. IDs, order and effects are upstream Praefect's (its
// rubenv/sql-migrate set), so a database migrated by either program is recognised by the other.

export interface Migration {
  /** The ID recorded in schema_migrations; the numeric prefix orders migrations. */
  readonly id: string;
  /** Statements applied in order. */
  readonly up: readonly string[];
  /** Statements that revert `up`; empty where the change cannot be undone (data clean-ups). */
  readonly down: readonly string[];
  /**
   * Upstream builds some indexes CONCURRENTLY, which PostgreSQL refuses inside a transaction,
   * so those migrations run their `up` statements outside one.
   */
  readonly upWithoutTransaction?: boolean;
}
