// Routing failures, worded like upstream Praefect's so clients and operators see the same
// messages. Most reach the client as Internal with the context they were wrapped in (upstream's
// status handler turns plain errors into Internal); the coordinator maps the ones clients act on
// (repository not found, already exists, read-only) to their own codes.
import { Code, RpcError } from "../../shared/grpc/errors.js";

export class VirtualStorageNotFoundError extends Error {
  constructor() {
    super("virtual storage does not exist");
    this.name = "VirtualStorageNotFoundError";
  }
}

/** No node of the virtual storage is healthy in this Praefect's view. */
export class NoHealthyNodesError extends Error {
  constructor() {
    super("no healthy nodes");
    this.name = "NoHealthyNodesError";
  }
}

/** Healthy nodes exist, but none holds an up-to-date replica. */
export class NoSuitableNodeError extends Error {
  constructor() {
    super("no suitable node to serve the request");
    this.name = "NoSuitableNodeError";
  }
}

export class PrimaryNotHealthyError extends Error {
  constructor() {
    super("primary gitaly is not healthy");
    this.name = "PrimaryNotHealthyError";
  }
}

/** The stored primary is not among the repository's assigned storages (a demotion raced the route). */
export class PrimaryUnassignedError extends Error {
  constructor() {
    super("primary node is not assigned");
    this.name = "PrimaryUnassignedError";
  }
}

/** The additional repository of a request is not tracked. The client sees NotFound with its location. */
export class AdditionalRepositoryNotFoundError extends Error {
  constructor(
    readonly storageName: string,
    readonly relativePath: string,
  ) {
    super("additional repository not found");
    this.name = "AdditionalRepositoryNotFoundError";
  }
}

/** The primary lacks the latest generation: writes would lose data, so the repository only serves reads. */
export function repositoryReadOnlyError(): RpcError {
  return new RpcError(Code.FAILED_PRECONDITION, "repository is in read-only mode");
}

export function isRepositoryReadOnlyError(err: unknown): boolean {
  return (
    err instanceof RpcError &&
    err.code === Code.FAILED_PRECONDITION &&
    err.message === "repository is in read-only mode"
  );
}

/** Go-style wrapping: `<context>: <cause's message>`, keeping the cause for classification. */
export function wrapError(context: string, err: unknown): Error {
  const message = err instanceof Error ? err.message : String(err);
  return new Error(`${context}: ${message}`, { cause: err });
}

/** The first error in `err`'s cause chain that is an instance of `type`. */
export function findCause<T extends Error>(err: unknown, type: abstract new (...args: never[]) => T): T | undefined {
  let current: unknown = err;
  for (let depth = 0; current !== undefined && current !== null && depth < 32; depth++) {
    if (current instanceof type) return current;
    current = (current as { cause?: unknown }).cause;
  }
  return undefined;
}

// SQLSTATE classes and socket errors that mean "the database cannot be reached right now",
// as opposed to a query that failed: clients should retry those, so they map to Unavailable.
const UNREACHABLE_CODES = new Set([
  "ECONNREFUSED",
  "ECONNRESET",
  "ETIMEDOUT",
  "EHOSTUNREACH",
  "ENETUNREACH",
  "ENOTFOUND",
  "EPIPE",
  "57P01", // admin_shutdown
  "57P02", // crash_shutdown
  "57P03", // cannot_connect_now
]);

/** Whether `err` (anywhere in its cause chain) says PostgreSQL is unreachable. */
export function isDatabaseUnavailable(err: unknown): boolean {
  let current: unknown = err;
  for (let depth = 0; current !== undefined && current !== null && depth < 32; depth++) {
    const e = current as { code?: unknown; message?: unknown; cause?: unknown };
    if (typeof e.code === "string" && (UNREACHABLE_CODES.has(e.code) || e.code.startsWith("08"))) return true;
    if (
      typeof e.message === "string" &&
      /Connection terminated|timeout exceeded when trying to connect|Client has encountered a connection error/.test(
        e.message,
      )
    ) {
      return true;
    }
    current = e.cause;
  }
  return false;
}
