// gitaly.ServerService: what this node is and how its storages fare. Praefect calls
// these to build its own (virtual-storage) answers, and GitLab shows them in its
// admin area.

import { stat, statfs } from "node:fs/promises";
import { create } from "@bufbuild/protobuf";
import {
  DiskStatisticsResponse_StorageStatusSchema,
  DiskStatisticsResponseSchema,
  ReadinessCheckResponse_OkSchema,
  ReadinessCheckResponseSchema,
  ServerInfoResponse_StorageStatusSchema,
  ServerInfoResponseSchema,
  type ServerService,
  ServerSignatureResponseSchema,
} from "../../../gen/server_pb.js";
import { internal } from "../../../shared/grpc/errors.js";
import { unary } from "../../../shared/grpc/handlers.js";
import type { ServiceImplementation } from "../../../shared/grpc/service.js";
import type { Logger } from "../../../shared/logging.js";
import { detectFsType } from "./fstype.js";

export interface ServerServiceDeps {
  storages: readonly { name: string; path: string }[];
  serverVersion: string;
  gitVersion: () => Promise<string>;
  /** The storage's filesystem id from .gitaly-metadata, or undefined if unreadable. */
  filesystemId: (storagePath: string) => Promise<string | undefined>;
  logger: Logger;
}

/** Owner read+execute means readable, owner write means writeable, as upstream checks. */
async function permissions(path: string): Promise<{ readable: boolean; writeable: boolean }> {
  try {
    const { mode } = await stat(path);
    return { readable: (mode & 0o500) === 0o500, writeable: (mode & 0o200) === 0o200 };
  } catch {
    return { readable: false, writeable: false };
  }
}

export function serverService(deps: ServerServiceDeps): ServiceImplementation<(typeof ServerService)["method"]> {
  return {
    serverInfo: unary(async () => {
      let gitVersion: string;
      try {
        gitVersion = await deps.gitVersion();
      } catch (err) {
        throw internal(`determining git version: ${(err as Error).message}`, err);
      }
      const statuses = await Promise.all(
        deps.storages.map(async (s) => {
          const [perm, fsType, filesystemId] = await Promise.all([
            permissions(s.path),
            detectFsType(s.path),
            deps.filesystemId(s.path).catch((err: unknown) => {
              deps.logger.error({ storage: s.name, err }, "reading gitaly metadata file");
              return undefined;
            }),
          ]);
          return create(ServerInfoResponse_StorageStatusSchema, {
            storageName: s.name,
            readable: perm.readable,
            writeable: perm.writeable,
            fsType,
            filesystemId: filesystemId ?? "",
            // A Gitaly node is always one replica; Praefect reports the real factor.
            replicationFactor: 1,
          });
        }),
      );
      return create(ServerInfoResponseSchema, {
        serverVersion: deps.serverVersion,
        gitVersion,
        storageStatuses: statuses,
      });
    }),

    diskStatistics: unary(async () => {
      const statuses = await Promise.all(
        deps.storages.map(async (s) => {
          try {
            const fs = await statfs(s.path, { bigint: true });
            return create(DiskStatisticsResponse_StorageStatusSchema, {
              storageName: s.name,
              available: fs.bavail * fs.bsize,
              used: (fs.blocks - fs.bfree) * fs.bsize,
            });
          } catch (err) {
            // One bad storage must not hide the others' numbers.
            deps.logger.error({ storage: s.name, err }, "retrieving storage disk statistics");
            return create(DiskStatisticsResponse_StorageStatusSchema, { storageName: s.name });
          }
        }),
      );
      return create(DiskStatisticsResponseSchema, { storageStatuses: statuses });
    }),

    readinessCheck: unary(async () =>
      create(ReadinessCheckResponseSchema, {
        Result: { case: "okResponse", value: create(ReadinessCheckResponse_OkSchema) },
      }),
    ),

    // No commit signing key is configured in this implementation yet: an empty key
    // is what upstream returns when none is set.
    serverSignature: unary(async () => create(ServerSignatureResponseSchema, { publicKey: new Uint8Array() })),
  };
}
