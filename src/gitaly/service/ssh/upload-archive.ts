// SSHUploadArchive: `git upload-archive <repo>` over the bidi stream, which is what
// `git archive --remote` talks to. The client's arguments (ending with a flush) must
// arrive within [timeout] upload_archive_negotiation; the last message carries the
// exit status.
import { create, type MessageInitShape } from "@bufbuild/protobuf";
import type * as grpc from "@grpc/grpc-js";
import {
  type SSHUploadArchiveRequest,
  type SSHUploadArchiveResponse,
  SSHUploadArchiveResponseSchema,
} from "../../../gen/ssh_pb.js";
import { Code, invalidArgument, RpcError } from "../../../shared/grpc/errors.js";
import { callSignal } from "../repository/repository-service.js";
import type { TransportDeps } from "./git-options.js";
import { GitRunError, runGit, wrapError } from "./git-process.js";
import { NegotiationDeadline } from "./negotiation-deadline.js";
import { firstRequest, pumpRequestsToStdin, requestReader, sendMessage } from "./rpc-streams.js";

type Call = grpc.ServerDuplexStream<SSHUploadArchiveRequest, SSHUploadArchiveResponse>;

export async function sshUploadArchive(deps: TransportDeps, call: Call): Promise<void> {
  const signal = callSignal(call);
  const requests = requestReader<SSHUploadArchiveRequest>(call);
  const req = await firstRequest(requests);
  if (!req) throw new RpcError(Code.INTERNAL, "EOF");
  const repoPath = deps.locator.repositoryPath(req.repository);
  if (req.stdin.length > 0) throw invalidArgument("non-empty stdin in first request");

  const send = (message: MessageInitShape<typeof SSHUploadArchiveResponseSchema>) =>
    sendMessage(call, create(SSHUploadArchiveResponseSchema, message));
  const deadline = new NegotiationDeadline(deps.config.timeout.upload_archive_negotiation, "flush");
  try {
    await runGit({
      git: deps.git,
      command: { repoPath, subcommand: "upload-archive", args: [repoPath] },
      callSignal: signal,
      deadline,
      feedStdin: (stdin) =>
        pumpRequestsToStdin(
          requests,
          (r) => r.stdin,
          stdin,
          (chunk) => deadline.observe(chunk),
        ),
      onStdout: (chunk) => send({ stdout: chunk }),
      onStderr: (chunk) => send({ stderr: chunk }),
    });
  } catch (err) {
    if (err instanceof GitRunError && err.exitStatus !== undefined && err.code === Code.INTERNAL) {
      await send({ exitStatus: { value: err.exitStatus } });
      throw wrapError("send", err);
    }
    throw wrapError("running upload-archive", err);
  }
  await send({ exitStatus: { value: 0 } });
}
