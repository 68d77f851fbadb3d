// Replication: the workers that run queued jobs, the stale-lock sweeps, the reconciler loop and
// the background verifier.
export * from "./metrics.js";
export * from "./replicator.js";
export * from "./verifier.js";
export * from "./workers.js";
