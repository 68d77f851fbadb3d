// Praefect's PostgreSQL datastore: schema migrations, repository metadata and elections, node
// health consensus, the replication queue, change notifications with the read cache, and the
// reconciler's and verifier's queries.
export * from "./db.js";
export * from "./errors.js";
export * from "./health.js";
export * from "./migrate.js";
export * from "./notifications.js";
export * from "./queue.js";
export * from "./reconciler.js";
export * from "./replica-path.js";
export * from "./repositories.js";
export * from "./schema-fingerprint.js";
export * from "./verifier.js";
