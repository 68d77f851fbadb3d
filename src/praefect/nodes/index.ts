// Praefect's view of its Gitaly nodes: channels, backchannels, the health loop, error-based
// failure detection and the Praefect's own name in node_status.
export * from "./channel.js";
export * from "./election-vote.js";
export * from "./error-tracker.js";
export * from "./manager.js";
export * from "./praefect-name.js";
export type * from "./types.js";
