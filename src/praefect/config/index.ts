// Praefect's configuration: TOML with upstream's keys, validation, on-disk checks, and the
// PostgreSQL connection settings derived from [database].
export * from "./database.js";
export * from "./environment.js";
export * from "./load.js";
export * from "./node-address.js";
export * from "./node-token.js";
export * from "./reload.js";
export * from "./schema.js";
