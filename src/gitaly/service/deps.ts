// What the node's services share. Built once by gitaly-server.ts.
import type * as grpc from "@grpc/grpc-js";
import type { Repository } from "../../gen/shared_pb.js";
import type { Logger } from "../../shared/logging.js";
import type { GitalyConfig } from "../config/schema.js";
import type { CatfileCache } from "../git/catfile.js";
import type { ConfigPair, GitCommandFactory } from "../git/command.js";
import type { StorageLocator } from "../storage/locator.js";

/** Who is pushing, as GitLab identifies them (from PostReceivePack/SSHReceivePack/UserDetails). */
export interface PushUser {
  glId: string;
  glUsername: string;
  glRepository: string;
  /** "http" or "ssh", passed to GitLab's /allowed. */
  protocol: string;
  pushOptions?: string[];
}

/**
 * Makes git run this node's hooks for one call: the environment (GITALY_HOOKS_PAYLOAD
 * with the internal socket, token, transaction and user) and config (core.hooksPath)
 * to pass to every git command of that call that updates references.
 */
export interface HookEnvironment {
  forCall(
    call: { metadata: grpc.Metadata; getPeer(): string },
    repository: Repository,
    user?: PushUser,
  ): Promise<{ env: Record<string, string>; config: ConfigPair[] }>;
}

export interface NodeDeps {
  locator: StorageLocator;
  git: GitCommandFactory;
  catfile: CatfileCache;
  logger: Logger;
  config: GitalyConfig;
  hooks: HookEnvironment;
}
