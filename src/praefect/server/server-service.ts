// gitaly.ServerService as Praefect answers it: the cluster seen from outside, where each
// virtual storage looks like one storage. ServerInfo reports one status per virtual storage
// taken from one of its nodes and renamed; DiskStatistics concatenates every node's entries.
import { createHash } from "node:crypto";
import { create } from "@bufbuild/protobuf";
import {
  DiskStatisticsResponseSchema,
  ReadinessCheckResponse_Failure_ResponseSchema,
  ReadinessCheckResponse_FailureSchema,
  ReadinessCheckResponse_OkSchema,
  ReadinessCheckResponseSchema,
  type ServerInfoResponse,
  type ServerInfoResponse_StorageStatus,
  ServerInfoResponseSchema,
  ServerService,
  ServerSignatureResponseSchema,
} from "../../gen/server_pb.js";
import { internal } from "../../shared/grpc/errors.js";
import { unary } from "../../shared/grpc/handlers.js";
import { createClient, type ServiceImplementation } from "../../shared/grpc/service.js";
import type { Logger } from "../../shared/logging.js";
import type { GitalyNode, NodeManager } from "../nodes/types.js";
import { forwardedMetadata } from "./forwarded-metadata.js";

/** The namespace of the UUIDv5 filesystem IDs derived from virtual storage names (upstream's). */
export const FILESYSTEM_ID_NAMESPACE = "1ef1a8c6-cf52-4d0a-92a6-ca643e8bc7c5";

/** RFC 4122 version-5 UUID (SHA-1 of namespace and name). */
export function uuidV5(namespace: string, name: string): string {
  const ns = Buffer.from(namespace.replaceAll("-", ""), "hex");
  const hash = createHash("sha1").update(ns).update(name, "utf8").digest().subarray(0, 16);
  hash[6] = ((hash[6] as number) & 0x0f) | 0x50;
  hash[8] = ((hash[8] as number) & 0x3f) | 0x80;
  const hex = hash.toString("hex");
  return `${hex.slice(0, 8)}-${hex.slice(8, 12)}-${hex.slice(12, 16)}-${hex.slice(16, 20)}-${hex.slice(20)}`;
}

/** A virtual storage's stable filesystem ID: its nodes each have their own, clients need one. */
export function virtualStorageFilesystemId(virtualStorage: string): string {
  return uuidV5(FILESYSTEM_ID_NAMESPACE, virtualStorage);
}

/** A readiness check run by ReadinessCheck; rejects with the reason it failed. */
export interface ReadinessCheck {
  name: string;
  run(signal: AbortSignal): Promise<void>;
}

export interface PraefectServerServiceDeps {
  nodes: NodeManager;
  logger: Logger;
  checks?: readonly ReadinessCheck[];
}

export function praefectServerService(
  deps: PraefectServerServiceDeps,
): ServiceImplementation<(typeof ServerService)["method"]> {
  const { nodes, logger } = deps;
  const client = (node: GitalyNode) => createClient(ServerService, node.channel);
  const allNodes = () => nodes.virtualStorages().flatMap((vs) => nodes.nodes(vs));

  return {
    serverInfo: unary(async (_req, call) => {
      const metadata = forwardedMetadata(call.metadata);
      let versions: Pick<ServerInfoResponse, "serverVersion" | "gitVersion"> | undefined;
      const statuses = await Promise.all(
        nodes.virtualStorages().map(async (vs): Promise<ServerInfoResponse_StorageStatus | undefined> => {
          const members = nodes.nodes(vs);
          const healthy = nodes.locallyHealthy(vs);
          // Any node speaks for the virtual storage; a healthy one is likelier to answer.
          const candidates = [
            ...members.filter((n) => healthy.has(n.storage)),
            ...members.filter((n) => !healthy.has(n.storage)),
          ];
          for (const node of candidates) {
            let res: ServerInfoResponse;
            try {
              res = await client(node).serverInfo({}, { metadata, deadline: Date.now() + 10_000 });
            } catch (err) {
              logger.error({ err, virtual_storage: vs, storage: node.storage }, "error getting server info");
              continue;
            }
            versions ??= { serverVersion: res.serverVersion, gitVersion: res.gitVersion };
            const status = res.storageStatuses.find((s) => s.storageName === node.storage);
            if (!status) return undefined;
            status.storageName = vs;
            status.replicationFactor = members.length;
            if (members.length > 1) status.filesystemId = virtualStorageFilesystemId(vs);
            return status;
          }
          return undefined;
        }),
      );
      return create(ServerInfoResponseSchema, {
        serverVersion: versions?.serverVersion ?? "",
        gitVersion: versions?.gitVersion ?? "",
        storageStatuses: statuses.filter((s): s is ServerInfoResponse_StorageStatus => s !== undefined),
      });
    }),

    diskStatistics: unary(async (_req, call) => {
      const metadata = forwardedMetadata(call.metadata);
      const answers = await Promise.all(
        allNodes().map(async (node) => {
          try {
            return (await client(node).diskStatistics({}, { metadata })).storageStatuses;
          } catch (err) {
            throw internal(`error when requesting disk statistics from internal storage ${node.storage}`, err);
          }
        }),
      );
      return create(DiskStatisticsResponseSchema, { storageStatuses: answers.flat() });
    }),

    readinessCheck: unary(async (req) => {
      const seconds = Number(req.timeout?.seconds ?? 0n) + (req.timeout?.nanos ?? 0) / 1e9;
      const controller = new AbortController();
      const timer = seconds > 0 ? setTimeout(() => controller.abort(), seconds * 1000) : undefined;
      try {
        const failures = (
          await Promise.all(
            (deps.checks ?? []).map(async (check) => {
              try {
                await check.run(controller.signal);
                return undefined;
              } catch (err) {
                return create(ReadinessCheckResponse_Failure_ResponseSchema, {
                  name: check.name,
                  errorMessage: err instanceof Error ? err.message : String(err),
                });
              }
            }),
          )
        )
          .filter((f) => f !== undefined)
          .sort((a, b) => a.name.localeCompare(b.name));
        if (failures.length === 0) {
          return create(ReadinessCheckResponseSchema, {
            Result: { case: "okResponse", value: create(ReadinessCheckResponse_OkSchema) },
          });
        }
        return create(ReadinessCheckResponseSchema, {
          Result: {
            case: "failureResponse",
            value: create(ReadinessCheckResponse_FailureSchema, { failedChecks: failures }),
          },
        });
      } finally {
        if (timer) clearTimeout(timer);
      }
    }),

    serverSignature: unary(async (_req, call) => {
      const metadata = forwardedMetadata(call.metadata);
      let signature: Uint8Array | undefined;
      for (const node of allNodes()) {
        let key: Uint8Array;
        try {
          key = (await client(node).serverSignature({}, { metadata })).publicKey;
        } catch (err) {
          throw internal(`request signature from Praefect storage "${node.storage}": ${(err as Error).message}`, err);
        }
        if (signature === undefined) signature = key;
        else if (!Buffer.from(signature).equals(Buffer.from(key))) {
          throw internal(`signature mismatch with Praefect storage "${node.storage}"`);
        }
      }
      return create(ServerSignatureResponseSchema, { publicKey: signature ?? new Uint8Array() });
    }),
  };
}
