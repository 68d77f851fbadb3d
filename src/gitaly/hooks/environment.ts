// HookEnvironment: what a git command that updates references needs so that git runs
// this node's hooks for the call: GITALY_HOOKS_PAYLOAD (internal socket, its token,
// the transaction, the pusher) and core.hooksPath. Upstream: gitcmd.WithReceivePackHooks
// (with a pusher) and gitcmd.WithRefTxHook (without).
import { readFile } from "node:fs/promises";
import { join } from "node:path";
import { create } from "@bufbuild/protobuf";
import type * as grpc from "@grpc/grpc-js";
import { type Repository, RepositorySchema } from "../../gen/shared_pb.js";
import { Code, RpcError } from "../../shared/grpc/errors.js";
import type { ConfigPair } from "../git/command.js";
import type { HookEnvironment, PushUser } from "../service/deps.js";
import type { StorageLocator } from "../storage/locator.js";
import { transactionFromCall } from "../transaction/voting.js";
import { encodeHooksPayload, HOOKS_PAYLOAD_ENV, Hook, RECEIVE_PACK_HOOKS, type Transaction } from "./payload.js";
import type { HooksDirectories } from "./runtime.js";

export interface HookEnvironmentOptions {
  locator: StorageLocator;
  runtimeDir: string;
  /** The unix socket serving HookService. */
  internalSocketPath: string;
  /** The token HookService on that socket accepts. */
  internalToken: string;
  hooksDirs: HooksDirectories;
}

/** The repository's object format from its config (extensions.objectFormat); "sha1" without one. */
export async function repositoryObjectFormat(repoPath: string): Promise<string> {
  let config: string;
  try {
    config = await readFile(join(repoPath, "config"), "utf8");
  } catch {
    return "sha1";
  }
  let inExtensions = false;
  for (const line of config.split("\n")) {
    const section = /^\s*\[\s*([A-Za-z0-9.-]+)\s*\]/.exec(line);
    if (section) {
      inExtensions = (section[1] ?? "").toLowerCase() === "extensions";
      continue;
    }
    const entry = /^\s*objectformat\s*=\s*"?([A-Za-z0-9]+)"?\s*(?:[#;].*)?$/i.exec(line);
    if (inExtensions && entry) return (entry[1] ?? "sha1").toLowerCase();
  }
  return "sha1";
}

function firstMetadata(metadata: grpc.Metadata, key: string): string {
  const value = metadata.get(key)[0];
  if (value === undefined) return "";
  return typeof value === "string" ? value : value.toString("utf8");
}

export function createHookEnvironment(options: HookEnvironmentOptions): HookEnvironment {
  return {
    async forCall(call, repository, user?: PushUser): Promise<{ env: Record<string, string>; config: ConfigPair[] }> {
      let transaction: Transaction | undefined;
      try {
        transaction = transactionFromCall(call);
      } catch (err) {
        throw new RpcError(Code.INVALID_ARGUMENT, `reference transaction metadata: ${(err as Error).message}`, {
          cause: err,
        });
      }
      // Outside a transaction and a push no hook has anything to do: keep git's hooks off.
      if (!transaction && !user) return { env: {}, config: [] };

      const repoPath = options.locator.repositoryPath(repository, { mustExist: false });
      const payloadRepository: Repository = create(RepositorySchema, {
        storageName: repository.storageName,
        relativePath: repository.relativePath,
        gitObjectDirectory: repository.gitObjectDirectory,
        gitAlternateObjectDirectories: [...repository.gitAlternateObjectDirectories],
        glRepository: repository.glRepository || (user?.glRepository ?? ""),
        glProjectPath: repository.glProjectPath,
      });
      const payload = encodeHooksPayload({
        requestedHooks: user ? RECEIVE_PACK_HOOKS : Hook.ReferenceTransaction,
        objectFormat: await repositoryObjectFormat(repoPath),
        runtimeDir: options.runtimeDir,
        internalSocket: options.internalSocketPath,
        internalSocketToken: options.internalToken,
        ...(transaction ? { transaction } : {}),
        ...(user
          ? {
              userDetails: {
                username: user.glUsername,
                userId: user.glId,
                protocol: user.protocol,
                remoteIp: firstMetadata(call.metadata, "remote_ip"),
              },
            }
          : {}),
        repository: payloadRepository,
      });
      const hooksPath = transaction ? options.hooksDirs.transactional : options.hooksDirs.plain;
      return {
        env: { [HOOKS_PAYLOAD_ENV]: payload },
        config: [{ key: "core.hooksPath", value: hooksPath }],
      };
    },
  };
}
