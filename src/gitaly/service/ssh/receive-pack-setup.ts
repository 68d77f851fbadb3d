// What PostReceivePack (smart HTTP) and SSHReceivePack share before git runs: the
// first message's validation, the client's git config, the protocol environment and
// the hooks environment for the pusher. Kept in one place so both transports reject
// and identify pushes the same way.
import type * as grpc from "@grpc/grpc-js";
import type { Repository } from "../../../gen/shared_pb.js";
import { invalidArgument } from "../../../shared/grpc/errors.js";
import type { ConfigPair } from "../../git/command.js";
import { parseGitConfigOptions, protocolEnvForCall, type TransportDeps, type TransportMetrics } from "./git-options.js";

export interface ReceivePackFirstRequest {
  repository?: Repository;
  glId: string;
  glUsername: string;
  glRepository: string;
  gitConfigOptions: string[];
  gitProtocol: string;
}

export interface ReceivePackSetup {
  repository: Repository;
  repoPath: string;
  config: ConfigPair[];
  env: Record<string, string>;
  hooks: { env: Record<string, string>; config: ConfigPair[] };
}

export async function prepareReceivePack(
  deps: TransportDeps,
  metrics: TransportMetrics,
  call: { metadata: grpc.Metadata; getPeer(): string },
  req: ReceivePackFirstRequest,
  options: {
    service: string;
    method: string;
    protocol: "http" | "ssh";
    /** Bytes of payload in the first message, and upstream's message when there are any. */
    firstData: { length: number; message: string };
  },
): Promise<ReceivePackSetup> {
  deps.logger.debug(
    {
      GlID: req.glId,
      GlRepository: req.glRepository,
      GlUsername: req.glUsername,
      GitConfigOptions: req.gitConfigOptions,
      GitProtocol: req.gitProtocol,
    },
    options.method,
  );
  if (req.glId === "") throw invalidArgument("empty GlId");
  if (options.firstData.length > 0) throw invalidArgument(options.firstData.message);
  const repository = req.repository;
  const repoPath = deps.locator.repositoryPath(repository);
  if (!repository) throw invalidArgument("repository not set");
  const config = parseGitConfigOptions(req.gitConfigOptions);
  const env = protocolEnvForCall(
    metrics,
    deps.logger,
    { service: options.service, method: options.method },
    req.gitProtocol,
  );
  const hooks = await deps.hooks.forCall(call, repository, {
    glId: req.glId,
    glUsername: req.glUsername,
    glRepository: req.glRepository,
    protocol: options.protocol,
  });
  return { repository, repoPath, config, env, hooks };
}
