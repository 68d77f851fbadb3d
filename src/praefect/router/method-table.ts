// The routing table: every method Praefect proxies, with its operation type, scope and request
// fields read from the proto annotations at start-up. The few facts the annotations do not carry
// (which mutators create repositories, which accessors must read the primary) are upstream's own
// per-RPC lists (coordinator.go), kept here by name.
import type { DescMethod, DescService } from "@bufbuild/protobuf";
import { BlobService } from "../../gen/blob_pb.js";
import { CommitService } from "../../gen/commit_pb.js";
import { RefService } from "../../gen/ref_pb.js";
import { RepositoryService } from "../../gen/repository_pb.js";
import { SmartHTTPService } from "../../gen/smarthttp_pb.js";
import { SSHService } from "../../gen/ssh_pb.js";
import { isIntercepted, type MethodRouting, methodRouting } from "../../shared/proto/operations.js";
import { type RequestFields, requestFieldsOf } from "./request-fields.js";

/** The services clients reach through Praefect. HookService is only ever called on a node's internal socket. */
export const PROXIED_SERVICES: readonly DescService[] = [
  RepositoryService,
  RefService,
  CommitService,
  BlobService,
  SmartHTTPService,
  SSHService,
];

/** Mutators that create the repository: they reserve an ID and pick the storages. */
const CREATION_RPCS = new Set([
  "/gitaly.ObjectPoolService/CreateObjectPool",
  "/gitaly.RepositoryService/CreateFork",
  "/gitaly.RepositoryService/CreateRepository",
  "/gitaly.RepositoryService/CreateRepositoryFromBundle",
  "/gitaly.RepositoryService/CreateRepositoryFromSnapshot",
  "/gitaly.RepositoryService/CreateRepositoryFromURL",
  "/gitaly.RepositoryService/ReplicateRepository",
  "/gitaly.RepositoryService/RestoreRepository",
]);

/** Creations that update the repository instead when it already exists. */
const UPSERT_RPCS = new Set([
  "/gitaly.RepositoryService/ReplicateRepository",
  "/gitaly.RepositoryService/RestoreRepository",
]);

/** Accessors whose answers depend on on-disk layout, which differs between replicas: always the primary. */
const FORCE_PRIMARY_RPCS = new Set([
  "/gitaly.RepositoryService/GetObjectDirectorySize",
  "/gitaly.RepositoryService/RepositorySize",
]);

/** Repository-scoped RPCs Praefect answers itself from its database (per-repository elections). */
export const LOCALLY_ANSWERED_RPCS = new Set([
  "/gitaly.RepositoryService/RepositoryExists",
  "/gitaly.RepositoryService/RemoveRepository",
]);

/** The CreateFork source is not annotated; upstream resolves it by name. */
export const CREATE_FORK_RPC = "/gitaly.RepositoryService/CreateFork";

export interface ProxiedMethod {
  readonly path: string;
  readonly method: DescMethod;
  readonly routing: MethodRouting;
  readonly fields: RequestFields;
  readonly creation: boolean;
  readonly upsert: boolean;
  readonly forcePrimary: boolean;
}

export function proxiedMethod(method: DescMethod): ProxiedMethod {
  const routing = methodRouting(method);
  return {
    path: routing.path,
    method,
    routing,
    fields: requestFieldsOf(method.input),
    creation: CREATION_RPCS.has(routing.path),
    upsert: UPSERT_RPCS.has(routing.path),
    forcePrimary: FORCE_PRIMARY_RPCS.has(routing.path),
  };
}

/**
 * Every proxied method of `services`, keyed by path: intercepted services and the locally
 * answered RPCs are left out. Throws on a method without an operation type, since Praefect
 * could not route it (upstream refuses to start in that case too).
 */
export function buildMethodTable(services: readonly DescService[] = PROXIED_SERVICES): Map<string, ProxiedMethod> {
  const table = new Map<string, ProxiedMethod>();
  for (const service of services) {
    if (isIntercepted(service)) continue;
    for (const method of service.methods) {
      const entry = proxiedMethod(method);
      if (LOCALLY_ANSWERED_RPCS.has(entry.path)) continue;
      if (entry.routing.operation === "unknown") {
        throw new Error(`${entry.path}: no op_type annotation, Praefect cannot route it`);
      }
      table.set(entry.path, entry);
    }
  }
  return table;
}
