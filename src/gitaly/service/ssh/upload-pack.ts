// SSHUploadPackWithSidechannel: `git upload-pack <repo>` with its stdin fed from the
// sidechannel and its stdout/stderr sent back as sideband pkt-lines (band 1 / band
// 2), the way GitLab Shell and gitaly-ssh expect. Negotiation must end (the client's
// "done") within [timeout] upload_pack_negotiation.
import { create } from "@bufbuild/protobuf";
import type * as grpc from "@grpc/grpc-js";
import {
  type SSHUploadPackWithSidechannelRequest,
  type SSHUploadPackWithSidechannelResponse,
  SSHUploadPackWithSidechannelResponseSchema,
} from "../../../gen/ssh_pb.js";
import { Code, RpcError } from "../../../shared/grpc/errors.js";
import { BAND_DATA, BAND_PROGRESS, encodeSideband } from "../../git/pktline.js";
import { type Sidechannel, SidechannelError, sidechannelFromCall } from "../../server/sidechannel.js";
import { callSignal } from "../repository/repository-service.js";
import { parseGitConfigOptions, protocolEnvForCall, type TransportDeps, type TransportMetrics } from "./git-options.js";
import { runGit, wrapError } from "./git-process.js";
import { NegotiationDeadline } from "./negotiation-deadline.js";
import { NegotiationStats } from "./negotiation-stats.js";
import { pipeToStdin, writeChunk } from "./rpc-streams.js";

async function openSidechannel(call: grpc.ServerUnaryCall<unknown, unknown>): Promise<Sidechannel> {
  try {
    return await sidechannelFromCall(call);
  } catch (err) {
    // Upstream's wording, typo included.
    const reason = err instanceof SidechannelError ? err.reason : (err as Error).message;
    throw new RpcError(Code.INTERNAL, `opennig sidechannel: ${reason}`, { cause: err });
  }
}

export async function sshUploadPackWithSidechannel(
  deps: TransportDeps,
  metrics: TransportMetrics,
  req: SSHUploadPackWithSidechannelRequest,
  call: grpc.ServerUnaryCall<SSHUploadPackWithSidechannelRequest, SSHUploadPackWithSidechannelResponse>,
): Promise<SSHUploadPackWithSidechannelResponse> {
  const repoPath = deps.locator.repositoryPath(req.repository);
  const config = parseGitConfigOptions(req.gitConfigOptions);
  const env = protocolEnvForCall(
    metrics,
    deps.logger,
    { service: "gitaly.SSHService", method: "SSHUploadPackWithSidechannel" },
    req.gitProtocol,
  );
  const signal = callSignal(call);
  const sidechannel = await openSidechannel(call);
  const stats = new NegotiationStats();
  const deadline = new NegotiationDeadline(deps.config.timeout.upload_pack_negotiation, "done");
  const out = sidechannel.writable;
  try {
    const { stdoutBytes } = await runGit({
      git: deps.git,
      command: { repoPath, subcommand: "upload-pack", args: [repoPath], env, config },
      callSignal: signal,
      deadline,
      feedStdin: (stdin) =>
        pipeToStdin(sidechannel.readable, stdin, (chunk) => {
          stats.observe(chunk);
          deadline.observe(chunk);
        }),
      onStdout: (chunk) => writeChunk(out, encodeSideband(BAND_DATA, chunk)),
      onStderr: (chunk) => writeChunk(out, encodeSideband(BAND_PROGRESS, chunk)),
    });
    deps.logger.info(
      { repository: req.repository?.relativePath, response_bytes: stdoutBytes, negotiation: stats.summary() },
      "request details",
    );
  } catch (err) {
    sidechannel.destroy();
    throw wrapError("running upload-pack", err);
  } finally {
    const { features, deepen } = metrics.negotiation.ssh;
    stats.updateMetrics(features, deepen);
  }
  try {
    await sidechannel.close();
  } catch (err) {
    throw new RpcError(Code.INTERNAL, `close sidechannel: ${(err as Error).message}`, { cause: err });
  }
  return create(SSHUploadPackWithSidechannelResponseSchema, { packfileNegotiationStatistics: stats.toProto() });
}
