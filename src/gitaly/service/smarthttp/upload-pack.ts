// PostUploadPackWithSidechannel: the body of git's `POST git-upload-pack`. The
// request body arrives over the sidechannel and goes through `git upload-pack
// --stateless-rpc`; its output goes back raw (smart HTTP has no sideband at this
// level — upload-pack multiplexes inside its own response). The gRPC response only
// carries the negotiation statistics.
import { create } from "@bufbuild/protobuf";
import type * as grpc from "@grpc/grpc-js";
import {
  type PostUploadPackWithSidechannelRequest,
  type PostUploadPackWithSidechannelResponse,
  PostUploadPackWithSidechannelResponseSchema,
} from "../../../gen/smarthttp_pb.js";
import { Code, RpcError } from "../../../shared/grpc/errors.js";
import { type Sidechannel, SidechannelError, sidechannelFromCall } from "../../server/sidechannel.js";
import { callSignal } from "../repository/repository-service.js";
import {
  parseGitConfigOptions,
  protocolEnvForCall,
  type TransportDeps,
  type TransportMetrics,
} from "../ssh/git-options.js";
import { GitRunError, runGit } from "../ssh/git-process.js";
import { NegotiationDeadline } from "../ssh/negotiation-deadline.js";
import { NegotiationStats } from "../ssh/negotiation-stats.js";
import { pipeToStdin, writeChunk } from "../ssh/rpc-streams.js";

async function openSidechannel(call: grpc.ServerUnaryCall<unknown, unknown>): Promise<Sidechannel> {
  try {
    return await sidechannelFromCall(call);
  } catch (err) {
    // Already upstream's status: Unavailable (clients retry) when the stream failed,
    // Internal when the call cannot have a sidechannel at all.
    if (err instanceof SidechannelError) throw err;
    throw new RpcError(Code.INTERNAL, `open sidechannel: ${(err as Error).message}`, { cause: err });
  }
}

/** Upstream's status for a failed upload-pack, from how runGit saw it end. */
function uploadPackError(err: unknown): unknown {
  if (!(err instanceof GitRunError)) return err;
  if (err.code === Code.DEADLINE_EXCEEDED || (err.code === Code.CANCELLED && err.exitStatus === undefined)) {
    return new RpcError(err.code, `running upload-pack: ${err.message}`, { cause: err });
  }
  const how = err.exitStatus !== undefined ? `exit status ${err.exitStatus}` : err.message;
  return new RpcError(Code.FAILED_PRECONDITION, `running upload-pack: waiting for upload-pack: ${how}`, {
    cause: err,
  });
}

export async function postUploadPackWithSidechannel(
  deps: TransportDeps,
  metrics: TransportMetrics,
  req: PostUploadPackWithSidechannelRequest,
  call: grpc.ServerUnaryCall<PostUploadPackWithSidechannelRequest, PostUploadPackWithSidechannelResponse>,
): Promise<PostUploadPackWithSidechannelResponse> {
  const signal = callSignal(call);
  const repoPath = deps.locator.repositoryPath(req.repository);
  const config = parseGitConfigOptions(req.gitConfigOptions);
  const env = protocolEnvForCall(
    metrics,
    deps.logger,
    { service: "gitaly.SmartHTTPService", method: "PostUploadPackWithSidechannel" },
    req.gitProtocol,
  );
  const sidechannel = await openSidechannel(call);
  const stats = new NegotiationStats();
  // A stateless request is negotiation from start to end: the client has until the
  // end of its request body, and no longer.
  const deadline = new NegotiationDeadline(deps.config.timeout.upload_pack_negotiation, "done");
  const out = sidechannel.writable;
  try {
    const { stdoutBytes } = await runGit({
      git: deps.git,
      command: { repoPath, subcommand: "upload-pack", flags: ["--stateless-rpc"], args: [repoPath], env, config },
      callSignal: signal,
      deadline,
      feedStdin: async (stdin) => {
        await pipeToStdin(sidechannel.readable, stdin, (chunk) => {
          stats.observe(chunk);
          deadline.observe(chunk);
        });
        deadline.stop();
      },
      onStdout: (chunk) => writeChunk(out, chunk),
    });
    deps.logger.info(
      { repository: req.repository?.relativePath, response_bytes: stdoutBytes, negotiation: stats.summary() },
      "request details",
    );
  } catch (err) {
    // A shallow fetch may end with upload-pack exiting non-zero; upstream accepts that.
    const deepenExit = err instanceof GitRunError && err.exitStatus !== undefined && stats.summary().deepen !== "";
    if (!deepenExit) {
      sidechannel.destroy();
      throw uploadPackError(err);
    }
  } finally {
    const { features, deepen } = metrics.negotiation.smarthttp;
    stats.updateMetrics(features, deepen);
  }
  try {
    await sidechannel.close();
  } catch (err) {
    throw new RpcError(Code.INTERNAL, `close sidechannel connection: ${(err as Error).message}`, { cause: err });
  }
  return create(PostUploadPackWithSidechannelResponseSchema, { packfileNegotiationStatistics: stats.toProto() });
}
