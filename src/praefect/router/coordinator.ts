// The stream director (upstream's Coordinator): from a method and its first request message it
// decides where the call goes and what each node receives, and what happens once the nodes have
// answered. The message is decoded only to find and rewrite the repository (or storage) fields;
// everything after the first message travels as bytes (see server/proxy-handler.ts).
//
// No transactions in this version: a mutator runs on the primary only, and every other assigned
// replica becomes a replication target once the primary succeeded (upstream's non-transactional
// path). A failed write changes no generation, so a primary that went down mid-push cannot make
// the healthy replicas look outdated and block failover.
import { fromBinary, type Message, toBinary } from "@bufbuild/protobuf";
import * as grpc from "@grpc/grpc-js";
import type { Repository } from "../../gen/shared_pb.js";
import { repositoryNotFoundError } from "../../gitaly/storage/locator.js";
import { alreadyExists, Code, internal, invalidArgument, notFound, RpcError } from "../../shared/grpc/errors.js";
import { describeCallRepository } from "../../shared/grpc/observability.js";
import { CORRELATION_ID_KEY, type Logger } from "../../shared/logging.js";
import type { Operation } from "../../shared/proto/operations.js";
import { RepositoryAlreadyExistsError, RepositoryNotFoundError } from "../datastore/errors.js";
import type { ReplicationQueue } from "../datastore/queue.js";
import type { RepositoryStore } from "../datastore/repositories.js";
import type { GitalyNode, NodeManager } from "../nodes/types.js";
import {
  AdditionalRepositoryNotFoundError,
  findCause,
  isDatabaseUnavailable,
  VirtualStorageNotFoundError,
  wrapError,
} from "./errors.js";
import { CREATE_FORK_RPC, type ProxiedMethod } from "./method-table.js";
import {
  additionalRepository,
  RepositoryFieldNotFoundError,
  type StorageField,
  storageField,
  targetRepository,
} from "./request-fields.js";
import type { MutatorRoute, PerRepositoryRouter } from "./router.js";

export const VIRTUAL_STORAGE_METADATA_KEY = "virtual_storage";
export const ROUTE_ACCESSOR_POLICY_KEY = "gitaly-route-repository-accessor-policy";
export const ROUTE_ACCESSOR_POLICY_PRIMARY_ONLY = "primary-only";
export const PARTITIONING_HINT_KEY = "gitaly-partitioning-hint";

/** One node call: the node and the (rewritten) first request message it receives. */
export interface Destination {
  node: GitalyNode;
  message: Uint8Array;
}

/** How one node call ended. */
export interface NodeOutcome {
  storage: string;
  status: grpc.StatusObject;
}

export interface ProxyPlan {
  virtualStorage: string;
  operation: Operation;
  /** The node calls; the first one's responses go to the client. */
  destinations: Destination[];
  /** Request metadata to set (or replace) on the node calls, besides virtual_storage. */
  extraMetadata: Record<string, string>;
  /** Runs once every node call ended; returns the status the client gets. */
  finish(outcomes: readonly NodeOutcome[]): Promise<grpc.StatusObject>;
}

export interface CoordinatorOptions {
  router: PerRepositoryRouter;
  nodes: NodeManager;
  store: RepositoryStore;
  queue: ReplicationQueue;
  /** Drops the cached up-to-date view of a repository this Praefect has just changed. */
  invalidate(virtualStorage: string, relativePath: string): void;
  /** default_replication_factor per virtual storage. */
  replicationFactors: Readonly<Record<string, number>>;
  logger: Logger;
  /** Called for every routed read with the storage it went to (read_distribution). */
  onRead?(virtualStorage: string, storage: string): void;
}

/**
 * Node errors that say something about the node's health rather than about the request, for
 * error-based failure detection. Upstream counts every error; Internal is left out here because
 * Gitaly reports git's own refusals (a bad want, a missing object) as Internal, and those must
 * not take a healthy node out of rotation.
 */
const NODE_FAILURE_CODES = new Set<number>([Code.UNAVAILABLE, Code.DEADLINE_EXCEEDED, Code.DATA_LOSS]);

export function isNodeFailure(status: grpc.StatusObject): boolean {
  return NODE_FAILURE_CODES.has(status.code);
}

function statusOf(err: RpcError): grpc.StatusObject {
  const e = err.toServiceError();
  return { code: e.code, details: e.details, metadata: e.metadata };
}

/** A repository's storage and path, validated like upstream's validateTargetRepo. */
function validateTarget(repo: Repository, hasVirtualStorage: (name: string) => boolean): void {
  if (repo.storageName === "" && repo.relativePath === "") throw invalidArgument("repository not set");
  if (repo.storageName === "") throw invalidArgument("storage name not set");
  if (repo.relativePath === "") throw invalidArgument("repository path not set");
  if (!hasVirtualStorage(repo.storageName)) {
    throw invalidArgument("storage name not found", { storage_name: repo.storageName });
  }
}

/** The one value of a metadata key; throws when the caller sent several. */
function singleValue(metadata: grpc.Metadata, key: string, what: string): string | undefined {
  const values = metadata.get(key);
  if (values.length > 1) throw new Error(`multiple ${what}`);
  const value = values[0];
  return value === undefined ? undefined : String(value);
}

/** The source repository of CreateFork, which carries no annotation. */
function createForkSource(request: Message, entry: ProxiedMethod): Repository | undefined {
  const field = entry.method.input.fields.find((f) => f.name === "source_repository");
  if (!field) return undefined;
  return (request as unknown as Record<string, Repository | undefined>)[field.localName];
}

export class Coordinator {
  constructor(private readonly options: CoordinatorOptions) {}

  /** Plans a call; throws RpcError with the status the client gets when it cannot be routed. */
  async plan(entry: ProxiedMethod, firstMessage: Uint8Array, metadata: grpc.Metadata): Promise<ProxyPlan> {
    let request: Message;
    try {
      request = fromBinary(entry.method.input, firstMessage);
    } catch (err) {
      throw internal(`decode request: ${(err as Error).message}`, err);
    }
    switch (entry.routing.scope) {
      case "repository":
        return this.planRepositoryScoped(entry, request, metadata);
      case "storage":
        return this.planStorageScoped(entry, request);
      default:
        throw internal(`rpc with undefined scope "${entry.routing.scope}"`);
    }
  }

  private async planRepositoryScoped(
    entry: ProxiedMethod,
    request: Message,
    metadata: grpc.Metadata,
  ): Promise<ProxyPlan> {
    let target: Repository;
    try {
      target = targetRepository(entry.fields, request);
    } catch (err) {
      if (err instanceof RepositoryFieldNotFoundError) throw invalidArgument("repository not set");
      throw internal(`repo scoped: ${(err as Error).message}`, err);
    }
    // Captured before any rewrite: the same message object is re-encoded per node.
    const virtualStorage = target.storageName;
    const relativePath = target.relativePath;
    describeCallRepository(metadata, {
      storageName: virtualStorage,
      relativePath,
      glRepository: target.glRepository,
      glProjectPath: target.glProjectPath,
    });
    validateTarget(target, (name) => this.options.router.hasVirtualStorage(name));
    try {
      switch (entry.routing.operation) {
        case "accessor":
          return await this.planAccessor(entry, request, metadata, target, virtualStorage, relativePath);
        case "mutator":
          return await this.planMutator(entry, request, metadata, target, virtualStorage, relativePath);
        case "maintenance":
          return await this.planMaintenance(entry, request, target, virtualStorage, relativePath);
        default:
          throw new Error(`unknown operation type: ${entry.routing.operation}`);
      }
    } catch (err) {
      throw this.routingError(err, virtualStorage, relativePath);
    }
  }

  /** The status a routing failure gives the client, as upstream's StreamDirector maps them. */
  private routingError(err: unknown, virtualStorage: string, relativePath: string): RpcError {
    if (err instanceof RpcError) return err;
    const message = err instanceof Error ? err.message : String(err);
    const additional = findCause(err, AdditionalRepositoryNotFoundError);
    if (additional) {
      return notFound(message, { storage_name: additional.storageName, relative_path: additional.relativePath });
    }
    if (findCause(err, RepositoryNotFoundError)) return repositoryNotFoundError(virtualStorage, relativePath);
    if (findCause(err, RepositoryAlreadyExistsError)) return alreadyExists(message);
    if (isDatabaseUnavailable(err)) return new RpcError(Code.UNAVAILABLE, `database unavailable: ${message}`);
    return internal(message, err);
  }

  private encode(entry: ProxiedMethod, request: Message): Uint8Array {
    return toBinary(entry.method.input, request);
  }

  /**
   * The request as `storage` must see it: target (and additional) repository on that physical
   * storage at their replica paths.
   */
  private rewrite(
    entry: ProxiedMethod,
    request: Message,
    target: Repository,
    additional: Repository | undefined,
    storage: string,
    replicaPath: string,
    additionalReplicaPath: string,
  ): Uint8Array {
    if (additional) {
      additional.storageName = storage;
      additional.relativePath = additionalReplicaPath;
    }
    target.storageName = storage;
    target.relativePath = replicaPath;
    return this.encode(entry, request);
  }

  /** The additional repository, which must live on the target's virtual storage. */
  private additional(entry: ProxiedMethod, request: Message, virtualStorage: string): Repository | undefined {
    let additional: Repository | undefined;
    try {
      additional = additionalRepository(entry.fields, request);
    } catch (err) {
      throw invalidArgument((err as Error).message);
    }
    if (additional && additional.storageName !== virtualStorage) {
      throw invalidArgument(
        "resolving additional repository on different storage than target repository is not supported",
      );
    }
    return additional;
  }

  private async planAccessor(
    entry: ProxiedMethod,
    request: Message,
    metadata: grpc.Metadata,
    target: Repository,
    virtualStorage: string,
    relativePath: string,
  ): Promise<ProxyPlan> {
    const additional = this.additional(entry, request, virtualStorage);
    // The caller may ask for the primary; some RPCs always read it (on-disk layout differs per replica).
    const forcePrimary =
      metadata.get(ROUTE_ACCESSOR_POLICY_KEY)[0] === ROUTE_ACCESSOR_POLICY_PRIMARY_ONLY || entry.forcePrimary;
    const route = await this.options.router
      .routeRepositoryAccessor(virtualStorage, relativePath, forcePrimary)
      .catch((err: unknown) => {
        throw wrapError("accessor call: route repository accessor", err);
      });
    let additionalReplicaPath = "";
    if (additional) {
      const repo = await this.options.store.getRepository(virtualStorage, additional.relativePath);
      if (!repo) throw new AdditionalRepositoryNotFoundError(virtualStorage, additional.relativePath);
      additionalReplicaPath = repo.replicaPath;
    }
    const message = this.rewrite(
      entry,
      request,
      target,
      additional,
      route.node.storage,
      route.replicaPath,
      additionalReplicaPath,
    );
    this.options.onRead?.(virtualStorage, route.node.storage);
    return {
      virtualStorage,
      operation: "accessor",
      destinations: [{ node: route.node, message }],
      extraMetadata: {},
      finish: async ([outcome]) => {
        const status = outcomeStatus(outcome);
        if (isNodeFailure(status)) this.options.nodes.reportError(virtualStorage, route.node.storage, "read");
        return status;
      },
    };
  }

  private async planMutator(
    entry: ProxiedMethod,
    request: Message,
    metadata: grpc.Metadata,
    target: Repository,
    virtualStorage: string,
    relativePath: string,
  ): Promise<ProxyPlan> {
    const additional = this.additional(entry, request, virtualStorage);
    let additionalRelativePath = additional?.relativePath ?? "";
    let hintRewritten = false;
    if (!additional) {
      // A partitioning hint names another repository by its virtual path: Gitaly needs its replica path.
      hintRewritten = true;
      try {
        additionalRelativePath = singleValue(metadata, PARTITIONING_HINT_KEY, "partitioning hints") ?? "";
      } catch (err) {
        throw wrapError("mutator call: extract partitioning hint", err);
      }
      if (additionalRelativePath === "" && entry.path === CREATE_FORK_RPC) {
        additionalRelativePath = createForkSource(request, entry)?.relativePath ?? "";
      }
    }

    let creation = entry.creation;
    let route: MutatorRoute;
    if (creation) {
      try {
        route = await this.options.router.routeRepositoryCreation(virtualStorage, relativePath, additionalRelativePath);
      } catch (err) {
        if (!(entry.upsert && findCause(err, RepositoryAlreadyExistsError))) {
          throw wrapError("route repository creation", err);
        }
        // Replicate/Restore of a repository that exists updates it instead.
        creation = false;
        route = await this.routeMutator(virtualStorage, relativePath, additionalRelativePath);
      }
    } else {
      route = await this.routeMutator(virtualStorage, relativePath, additionalRelativePath);
    }

    const message = this.rewrite(
      entry,
      request,
      target,
      additional,
      route.primary.storage,
      route.replicaPath,
      route.additionalReplicaPath,
    );
    const extraMetadata: Record<string, string> = {};
    if (hintRewritten && additionalRelativePath !== "")
      extraMetadata[PARTITIONING_HINT_KEY] = route.additionalReplicaPath;
    const correlationId = metadata.get(CORRELATION_ID_KEY)[0];

    return {
      virtualStorage,
      operation: "mutator",
      destinations: [{ node: route.primary, message }],
      extraMetadata,
      finish: async ([outcome]) => {
        const status = outcomeStatus(outcome);
        if (status.code !== Code.OK) {
          if (isNodeFailure(status)) this.options.nodes.reportError(virtualStorage, route.primary.storage, "write");
          return status;
        }
        try {
          await this.recordWrite(route, virtualStorage, relativePath, creation, {
            correlationId: correlationId === undefined ? undefined : String(correlationId),
            entry,
          });
        } catch (err) {
          this.options.logger.error(
            { err, virtual_storage: virtualStorage, relative_path: relativePath, method: entry.path },
            "recording the write in the database failed",
          );
          return statusOf(this.routingError(err, virtualStorage, relativePath));
        }
        return status;
      },
    };
  }

  private routeMutator(
    virtualStorage: string,
    relativePath: string,
    additionalRelativePath: string,
  ): Promise<MutatorRoute> {
    return this.options.router
      .routeRepositoryMutator(virtualStorage, relativePath, additionalRelativePath)
      .catch((err: unknown) => {
        if (err instanceof RpcError) throw err;
        throw wrapError("mutator call: route repository mutator", err);
      });
  }

  /**
   * After a successful write on the primary: the new generation (or, for a creation, the
   * repository's records), then an `update` job from the primary for every other assigned
   * replica, then the local read cache, so this Praefect's next read cannot hit a replica
   * that just became outdated even before the change notification arrives.
   */
  private async recordWrite(
    route: MutatorRoute,
    virtualStorage: string,
    relativePath: string,
    creation: boolean,
    context: { correlationId: string | undefined; entry: ProxiedMethod },
  ): Promise<void> {
    const { store, queue } = this.options;
    const outdated = [...route.secondaries.map((n) => n.storage), ...route.replicationTargets];
    try {
      if (creation) {
        const factor = this.options.replicationFactors[virtualStorage] ?? 0;
        const storeAssignments =
          factor > 0 ||
          (route.additionalReplicaPath !== "" && (await store.hasRepositoryAssignments(route.additionalReplicaPath)));
        await store
          .createRepository({
            repositoryId: route.repositoryId,
            virtualStorage,
            relativePath,
            replicaPath: route.replicaPath,
            primary: route.primary.storage,
            updatedSecondaries: [],
            outdatedSecondaries: outdated,
            storePrimary: true,
            storeAssignments,
          })
          .catch((err: unknown) => {
            throw wrapError("create repository", err);
          });
      } else {
        await store.incrementGeneration(route.repositoryId, route.primary.storage, []).catch((err: unknown) => {
          throw wrapError("increment generation", err);
        });
      }
      const meta = context.correlationId ? { correlation_id: context.correlationId } : null;
      await Promise.all(
        outdated.map((target) =>
          queue
            .enqueueUnlessWaiting(
              {
                repositoryId: route.repositoryId,
                replicaPath: route.replicaPath,
                change: "update",
                relativePath,
                targetNodeStorage: target,
                sourceNodeStorage: route.primary.storage,
                virtualStorage,
                params: null,
              },
              meta,
            )
            .catch((err: unknown) => {
              throw wrapError("enqueue replication event", err);
            }),
        ),
      );
    } finally {
      this.options.invalidate(virtualStorage, relativePath);
    }
    this.options.logger.info(
      {
        correlation_id: context.correlationId,
        "grpc.method": context.entry.path,
        "replication.primary": route.primary.storage,
        "replication.outdated": outdated,
        "replication.change": creation ? "create" : "update",
        virtual_storage: virtualStorage,
        relative_path: relativePath,
      },
      "queueing replication jobs",
    );
  }

  private async planMaintenance(
    entry: ProxiedMethod,
    request: Message,
    target: Repository,
    virtualStorage: string,
    relativePath: string,
  ): Promise<ProxyPlan> {
    const route = await this.options.router
      .routeRepositoryMaintenance(virtualStorage, relativePath)
      .catch((err: unknown) => {
        throw wrapError("routing repository maintenance", err);
      });
    const destinations = route.nodes.map((node) => ({
      node,
      message: this.rewrite(entry, request, target, undefined, node.storage, route.replicaPath, ""),
    }));
    return {
      virtualStorage,
      operation: "maintenance",
      destinations,
      extraMetadata: {},
      // Every node gets its chance; the first failure in route order is what the client sees.
      finish: async (outcomes) => {
        for (const outcome of outcomes) {
          if (outcome.status.code !== Code.OK) {
            this.options.logger.error(
              { gitaly_storage: outcome.storage, code: outcome.status.code, error: outcome.status.details },
              "proxying maintenance RPC to node failed",
            );
          }
        }
        return outcomes.find((o) => o.status.code !== Code.OK)?.status ?? outcomeStatus(outcomes[0]);
      },
    };
  }

  private planStorageScoped(entry: ProxiedMethod, request: Message): ProxyPlan {
    let field: StorageField;
    try {
      field = storageField(entry.fields, request);
    } catch (err) {
      throw invalidArgument(`storage scoped: ${(err as Error).message}`);
    }
    const virtualStorage = field.value;
    if (virtualStorage === "") throw invalidArgument("storage scoped: target storage is invalid");
    if (entry.routing.operation !== "accessor") {
      if (entry.routing.operation === "mutator") {
        throw internal(
          `mutator storage scoped: get shard "${virtualStorage}": RouteStorageMutator is not implemented on PerRepositoryRouter`,
        );
      }
      throw internal(`storage scope: unknown operation type: ${entry.routing.operation}`);
    }
    let node: GitalyNode;
    try {
      node = this.options.router.routeStorageAccessor(virtualStorage).node;
    } catch (err) {
      if (err instanceof VirtualStorageNotFoundError) throw invalidArgument(err.message);
      throw internal(
        `accessor storage scoped: route storage accessor "${virtualStorage}": ${(err as Error).message}`,
        err,
      );
    }
    field.set(node.storage);
    return {
      virtualStorage,
      operation: "accessor",
      destinations: [{ node, message: this.encode(entry, request) }],
      extraMetadata: {},
      finish: async ([outcome]) => outcomeStatus(outcome),
    };
  }
}

function outcomeStatus(outcome: NodeOutcome | undefined): grpc.StatusObject {
  return outcome?.status ?? { code: Code.INTERNAL, details: "no node answered", metadata: new grpc.Metadata() };
}
