// Config rendering shared by the operator (ConfigMaps) and the local runner (files on disk).
export type { AuthParams, LoggingParams, TlsListenerParams } from "./common.js";
export * from "./gitaly-config.js";
export * from "./names.js";
export * from "./praefect-config.js";
