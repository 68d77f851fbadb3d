// The two RepositoryService RPCs Praefect answers itself. RepositoryExists asks the database,
// which is the truth about what exists in the cluster. RemoveRepository deletes the records
// first (from then on the repository does not exist for clients) and then the replicas on the
// nodes, best effort: whatever a node misses is an orphan the cleanup finds later.
import { create } from "@bufbuild/protobuf";
import type * as grpc from "@grpc/grpc-js";
import {
  type RemoveRepositoryRequest,
  type RemoveRepositoryResponse,
  RemoveRepositoryResponseSchema,
  type RepositoryExistsRequest,
  type RepositoryExistsResponse,
  RepositoryExistsResponseSchema,
  RepositoryService,
} from "../../gen/repository_pb.js";
import { Code, invalidArgument, notFound, RpcError } from "../../shared/grpc/errors.js";
import { unary } from "../../shared/grpc/handlers.js";
import { createClient } from "../../shared/grpc/service.js";
import type { Logger } from "../../shared/logging.js";
import { RepositoryNotFoundError } from "../datastore/errors.js";
import type { RepositoryStore } from "../datastore/repositories.js";
import type { NodeManager } from "../nodes/types.js";
import { isDatabaseUnavailable } from "../router/errors.js";
import { forwardedMetadata } from "./forwarded-metadata.js";

/** How long RemoveRepository waits for the nodes: the records are gone already, the rest can wait. */
export const REMOVE_FROM_NODES_TIMEOUT_MS = 10_000;

export interface RepositoryHandlersDeps {
  store: Pick<RepositoryStore, "repositoryExists" | "deleteRepository">;
  nodes: NodeManager;
  logger: Logger;
  /** Drops the cached view of a repository this Praefect removed. */
  invalidate(virtualStorage: string, relativePath: string): void;
}

function databaseError(context: string, err: unknown): RpcError {
  const message = `${context}: ${err instanceof Error ? err.message : String(err)}`;
  // Named, so the client can tell an outage of Praefect's database from one of a Gitaly node.
  if (isDatabaseUnavailable(err))
    return new RpcError(Code.UNAVAILABLE, `database unavailable: ${message}`, { cause: err });
  return new RpcError(Code.INTERNAL, message, { cause: err });
}

export function repositoryExistsHandler(
  deps: RepositoryHandlersDeps,
): grpc.handleUnaryCall<RepositoryExistsRequest, RepositoryExistsResponse> {
  return unary(async (req) => {
    const repo = req.repository;
    if (!repo) throw invalidArgument("repository not set");
    if (repo.storageName === "") throw invalidArgument("storage name not set");
    if (repo.relativePath === "") throw invalidArgument("repository path not set");
    let exists: boolean;
    try {
      exists = await deps.store.repositoryExists(repo.storageName, repo.relativePath);
    } catch (err) {
      throw databaseError("repository exists", err);
    }
    return create(RepositoryExistsResponseSchema, { exists });
  });
}

export function removeRepositoryHandler(
  deps: RepositoryHandlersDeps,
): grpc.handleUnaryCall<RemoveRepositoryRequest, RemoveRepositoryResponse> {
  return unary(async (req, call) => {
    const repo = req.repository;
    if (!repo) throw invalidArgument("repository not set");
    const virtualStorage = repo.storageName;
    let deleted: { replicaPath: string; storages: string[] };
    try {
      deleted = await deps.store.deleteRepository(virtualStorage, repo.relativePath);
    } catch (err) {
      if (err instanceof RepositoryNotFoundError) throw notFound("repository does not exist");
      throw databaseError("delete repository", err);
    } finally {
      deps.invalidate(virtualStorage, repo.relativePath);
    }
    const metadata = forwardedMetadata(call.metadata);
    const deadline = Date.now() + REMOVE_FROM_NODES_TIMEOUT_MS;
    await Promise.all(
      deleted.storages.map(async (storage) => {
        // Records may name storages this Praefect does not know (any more): the cleanup handles those.
        const node = deps.nodes.node(virtualStorage, storage);
        if (!node) return;
        try {
          await createClient(RepositoryService, node.channel).removeRepository(
            { repository: { ...repo, storageName: storage, relativePath: deleted.replicaPath } },
            { metadata, deadline },
          );
        } catch (err) {
          deps.logger.error(
            { err, virtual_storage: virtualStorage, relative_path: repo.relativePath, storage },
            "failed deleting repository",
          );
        }
      }),
    );
    return create(RemoveRepositoryResponseSchema);
  });
}
