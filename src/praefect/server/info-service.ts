// PraefectInfoService: the cluster's own administration API (the praefect CLI and GitLab's
// admin pages use it), answered from the repository store, plus checksums from the nodes.
import { create } from "@bufbuild/protobuf";
import { timestampFromDate } from "@bufbuild/protobuf/wkt";
import type * as grpc from "@grpc/grpc-js";
import {
  type DatalossResponse_Repository,
  DatalossResponse_RepositorySchema,
  DatalossResponseSchema,
  GetRepositoryMetadataResponseSchema,
  MarkUnverifiedResponseSchema,
  type PraefectInfoService,
  RepositoryReplicasResponse_RepositoryDetailsSchema,
  RepositoryReplicasResponseSchema,
  SetAuthoritativeStorageResponseSchema,
  SetReplicationFactorResponseSchema,
} from "../../gen/praefect_pb.js";
import { RepositoryService } from "../../gen/repository_pb.js";
import { Code, invalidArgument, notFound, RpcError } from "../../shared/grpc/errors.js";
import { serverStream, unary } from "../../shared/grpc/handlers.js";
import { createClient, type ServiceImplementation } from "../../shared/grpc/service.js";
import { InvalidArgumentError, RepositoryNotFoundError } from "../datastore/errors.js";
import type { RepositoryMetadata, RepositoryStore } from "../datastore/repositories.js";
import type { NodeManager } from "../nodes/types.js";
import { isDatabaseUnavailable, wrapError } from "../router/errors.js";
import { forwardedMetadata } from "./forwarded-metadata.js";

export type InfoStore = Pick<
  RepositoryStore,
  | "getRepositoryId"
  | "getPrimary"
  | "getHostAssignments"
  | "getReplicaPath"
  | "dataloss"
  | "setAuthoritativeReplica"
  | "markUnverified"
  | "markVirtualStorageUnverified"
  | "markStorageUnverified"
  | "setReplicationFactor"
  | "getRepositoryMetadata"
  | "getRepositoryMetadataByPath"
>;

export interface InfoServiceDeps {
  store: InfoStore;
  nodes: NodeManager;
}

/** Repositories per Dataloss response message: keeps messages well below the size limits. */
const DATALOSS_CHUNK = 100;

/**
 * Non-status failures become Internal with their message, as upstream's status handler does;
 * an unreachable database is Unavailable, which clients retry.
 */
function asInternal(err: unknown): never {
  if (err instanceof RpcError) throw err;
  const message = err instanceof Error ? err.message : String(err);
  if (isDatabaseUnavailable(err))
    throw new RpcError(Code.UNAVAILABLE, `database unavailable: ${message}`, { cause: err });
  throw new RpcError(Code.INTERNAL, message, { cause: err });
}

export function praefectInfoService(
  deps: InfoServiceDeps,
): ServiceImplementation<(typeof PraefectInfoService)["method"]> {
  const { store, nodes } = deps;

  const checksum = async (
    virtualStorage: string,
    storage: string,
    relativePath: string,
    replicaPath: string,
    metadata: grpc.Metadata,
  ) => {
    const node = nodes.node(virtualStorage, storage);
    if (!node) throw new Error(`no connection to "${virtualStorage}"/"${storage}"`);
    const res = await createClient(RepositoryService, node.channel).calculateChecksum(
      { repository: { storageName: storage, relativePath: replicaPath } },
      { metadata },
    );
    return create(RepositoryReplicasResponse_RepositoryDetailsSchema, {
      repository: { storageName: storage, relativePath },
      checksum: res.checksum,
    });
  };

  return {
    repositoryReplicas: unary(async (req, call) => {
      const virtualStorage = req.repository?.storageName ?? "";
      const relativePath = req.repository?.relativePath ?? "";
      try {
        const id = await store.getRepositoryId(virtualStorage, relativePath).catch((err: unknown) => {
          throw wrapError("get repository id", err);
        });
        const primary = await store.getPrimary(id).catch((err: unknown) => {
          throw wrapError("get primary", err);
        });
        const assignments = await store.getHostAssignments(virtualStorage, id).catch((err: unknown) => {
          throw wrapError("get host assignments", err);
        });
        const replicaPath = await store.getReplicaPath(id).catch((err: unknown) => {
          throw wrapError("get replica path", err);
        });
        if (!assignments.includes(primary)) throw new Error(`primary "${primary}" is not an assigned host`);
        const md = forwardedMetadata(call.metadata);
        const [primaryDetails, ...replicas] = await Promise.all(
          [primary, ...assignments.filter((s) => s !== primary)].map((storage) =>
            checksum(virtualStorage, storage, relativePath, replicaPath, md),
          ),
        );
        return create(RepositoryReplicasResponseSchema, { primary: primaryDetails, replicas });
      } catch (err) {
        return asInternal(err);
      }
    }),

    dataloss: serverStream(async function* (req) {
      let repositories: Awaited<ReturnType<InfoStore["dataloss"]>>;
      try {
        repositories = await store.dataloss(req.virtualStorage, req.includePartiallyReplicated);
      } catch (err) {
        return asInternal(err);
      }
      let chunk: DatalossResponse_Repository[] = [];
      for (const repo of repositories) {
        chunk.push(
          create(DatalossResponse_RepositorySchema, {
            relativePath: repo.relativePath,
            primary: repo.primary,
            unavailable: repo.unavailable,
            storages: repo.storages.map((s) => ({
              name: s.name,
              behindBy: BigInt(s.behindBy),
              assigned: s.assigned,
              healthy: s.healthy,
              validPrimary: s.validPrimary,
            })),
          }),
        );
        if (chunk.length >= DATALOSS_CHUNK) {
          yield create(DatalossResponseSchema, { repositories: chunk });
          chunk = [];
        }
      }
      if (chunk.length > 0) yield create(DatalossResponseSchema, { repositories: chunk });
    }),

    setAuthoritativeStorage: unary(async (req) => {
      const storages = nodes.virtualStorages().includes(req.virtualStorage)
        ? nodes.nodes(req.virtualStorage).map((n) => n.storage)
        : undefined;
      if (!storages) throw invalidArgument(`unknown virtual storage: "${req.virtualStorage}"`);
      if (!storages.includes(req.authoritativeStorage)) {
        throw invalidArgument(`unknown authoritative storage: "${req.authoritativeStorage}"`);
      }
      try {
        await store.setAuthoritativeReplica(req.virtualStorage, req.relativePath, req.authoritativeStorage);
      } catch (err) {
        if (err instanceof RepositoryNotFoundError) {
          throw invalidArgument("repository does not exist on virtual storage", {
            virtual_storage: req.virtualStorage,
            relative_path: req.relativePath,
            authoritative_storage: req.authoritativeStorage,
          });
        }
        return asInternal(err);
      }
      return create(SetAuthoritativeStorageResponseSchema);
    }),

    markUnverified: unary(async (req) => {
      const selector = req.selector;
      let marked: number;
      try {
        switch (selector.case) {
          case "repositoryId":
            marked = await store.markUnverified(Number(selector.value));
            break;
          case "virtualStorage":
            marked = await store.markVirtualStorageUnverified(selector.value);
            break;
          case "storage":
            marked = await store.markStorageUnverified(selector.value.virtualStorage, selector.value.storage);
            break;
          default:
            throw new Error("unknown selector: <nil>");
        }
      } catch (err) {
        return asInternal(wrapError("schedule verification", err));
      }
      return create(MarkUnverifiedResponseSchema, { replicasMarked: BigInt(marked) });
    }),

    setReplicationFactor: unary(async (req) => {
      try {
        const storages = await store.setReplicationFactor(req.virtualStorage, req.relativePath, req.replicationFactor);
        return create(SetReplicationFactorResponseSchema, { storages });
      } catch (err) {
        const wrapped = wrapError("set replication factor", err);
        if (err instanceof InvalidArgumentError) throw invalidArgument(wrapped.message);
        return asInternal(wrapped);
      }
    }),

    getRepositoryMetadata: unary(async (req) => {
      let metadata: RepositoryMetadata;
      try {
        switch (req.query.case) {
          case "repositoryId":
            metadata = await store.getRepositoryMetadata(Number(req.query.value));
            break;
          case "path":
            metadata = await store.getRepositoryMetadataByPath(
              req.query.value.virtualStorage,
              req.query.value.relativePath,
            );
            break;
          default:
            throw new Error("unknown query type: <nil>");
        }
      } catch (err) {
        // Upstream's datastore error reads just "repository not found".
        if (err instanceof RepositoryNotFoundError) throw notFound("repository not found");
        return asInternal(wrapError("get metadata", err));
      }
      return create(GetRepositoryMetadataResponseSchema, {
        repositoryId: BigInt(metadata.repositoryId),
        virtualStorage: metadata.virtualStorage,
        relativePath: metadata.relativePath,
        replicaPath: metadata.replicaPath,
        primary: metadata.primary ?? "",
        generation: BigInt(metadata.generation),
        replicas: metadata.replicas.map((r) => ({
          storage: r.storage,
          assigned: r.assigned,
          generation: BigInt(r.generation),
          healthy: r.healthy,
          validPrimary: r.validPrimary,
          ...(r.verifiedAt ? { verifiedAt: timestampFromDate(r.verifiedAt) } : {}),
        })),
      });
    }),
  };
}
