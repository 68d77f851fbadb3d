// gitaly.SSHService. SSHUploadPackWithSidechannel runs `git upload-pack` with its
// stdin fed from the sidechannel and its stdout/stderr sent back as sideband
// pkt-lines (band 1 / band 2), the way GitLab Shell and gitaly-ssh expect.
import { create } from "@bufbuild/protobuf";
import type * as grpc from "@grpc/grpc-js";
import {
  type SSHService,
  type SSHUploadPackWithSidechannelRequest,
  SSHUploadPackWithSidechannelResponseSchema,
} from "../../../gen/ssh_pb.js";
import { Code, invalidArgument, RpcError } from "../../../shared/grpc/errors.js";
import { unary } from "../../../shared/grpc/handlers.js";
import type { ServiceImplementation } from "../../../shared/grpc/service.js";
import type { Logger } from "../../../shared/logging.js";
import type { GitalyConfig } from "../../config/schema.js";
import { type ConfigPair, GitCommandError, type GitCommandFactory } from "../../git/command.js";
import { BAND_DATA, BAND_PROGRESS, encodeSideband } from "../../git/pktline.js";
import { sidechannelFromCall } from "../../server/sidechannel.js";
import type { StorageLocator } from "../../storage/locator.js";
import { callSignal } from "../repository/repository-service.js";
import { NegotiationStats } from "./negotiation-stats.js";

export interface SshServiceDeps {
  locator: StorageLocator;
  git: GitCommandFactory;
  logger: Logger;
  config: GitalyConfig;
}

/** "key=value" options from the client; only the value may contain '='. */
export function parseGitConfigOptions(options: readonly string[]): ConfigPair[] {
  return options.map((opt) => {
    const eq = opt.indexOf("=");
    const key = eq === -1 ? opt : opt.slice(0, eq);
    if (!/^[A-Za-z][A-Za-z0-9-]*(\.[^=\s]+)*\.[A-Za-z][A-Za-z0-9-]*$/.test(key)) {
      throw invalidArgument(`invalid git config option: ${JSON.stringify(opt)}`);
    }
    return { key, value: eq === -1 ? "true" : opt.slice(eq + 1) };
  });
}

export function gitProtocolEnv(protocol: string): Record<string, string> {
  if (protocol === "") return {};
  if (protocol !== "version=2" && protocol !== "version=1") {
    throw invalidArgument(`invalid git protocol: ${JSON.stringify(protocol)}`);
  }
  return { GIT_PROTOCOL: protocol };
}

async function uploadPack(
  deps: SshServiceDeps,
  req: SSHUploadPackWithSidechannelRequest,
  call: grpc.ServerUnaryCall<SSHUploadPackWithSidechannelRequest, unknown>,
) {
  const repoPath = deps.locator.repositoryPath(req.repository);
  const config = parseGitConfigOptions(req.gitConfigOptions);
  const env = gitProtocolEnv(req.gitProtocol);
  const sidechannel = await sidechannelFromCall(call).catch((err: unknown) => {
    throw new RpcError(Code.UNAVAILABLE, `opening sidechannel: ${(err as Error).message}`);
  });
  const stats = new NegotiationStats();
  const signal = callSignal(call);
  // Negotiation that never finishes would hold a process forever.
  const timeout = AbortSignal.timeout(deps.config.timeout.upload_pack_negotiation);
  const proc = deps.git.spawn({
    repoPath,
    subcommand: "upload-pack",
    args: [repoPath],
    stdin: "pipe",
    env,
    config,
    signal: AbortSignal.any([signal, timeout]),
  });
  const out = sidechannel.writable;
  const send = (band: typeof BAND_DATA | typeof BAND_PROGRESS, chunk: Buffer) =>
    new Promise<void>((resolve) => {
      if (out.write(encodeSideband(band, chunk))) resolve();
      else out.once("drain", resolve);
    });
  sidechannel.readable.on("data", (chunk: Buffer) => stats.observe(chunk));
  sidechannel.readable.on("error", () => proc.kill());
  sidechannel.readable.pipe(proc.stdin as NodeJS.WritableStream).on("error", () => {});
  const pumpStdout = async () => {
    for await (const chunk of proc.stdout) await send(BAND_DATA, chunk as Buffer);
  };
  // stderr already has the factory's capture listener; progress is small, so it is
  // forwarded as it comes rather than through a second reader.
  proc.stderr.on("data", (chunk: Buffer) => void send(BAND_PROGRESS, chunk));
  try {
    await Promise.all([pumpStdout(), proc.wait()]);
  } catch (err) {
    sidechannel.destroy();
    if (err instanceof GitCommandError) {
      if (err.aborted && timeout.aborted)
        throw new RpcError(Code.DEADLINE_EXCEEDED, "upload-pack: negotiation timed out");
      if (err.aborted) throw new RpcError(Code.CANCELLED, "upload-pack: cancelled");
      throw new RpcError(Code.INTERNAL, `cmd wait: exit status ${err.exitCode ?? err.signal}`, {
        metadata: { stderr: err.stderr.slice(-1000) },
      });
    }
    throw err;
  }
  await sidechannel.close();
  const statistics = stats.toProto();
  deps.logger.debug({ repo: req.repository?.relativePath, statistics }, "upload-pack finished");
  return create(SSHUploadPackWithSidechannelResponseSchema, { packfileNegotiationStatistics: statistics });
}

export function sshService(deps: SshServiceDeps): ServiceImplementation<(typeof SSHService)["method"]> {
  return {
    sSHUploadPackWithSidechannel: unary((req, call) => uploadPack(deps, req, call)),
  };
}
