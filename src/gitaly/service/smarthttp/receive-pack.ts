// PostReceivePack: the body of git's `POST git-receive-pack`. The first message names
// the repository and the pusher; the `data` of every message is fed to `git
// receive-pack --stateless-rpc` and its output comes back as `data` messages. The
// push runs this node's hooks with protocol "http"; git itself keeps the incoming
// objects in a quarantine directory until pre-receive accepted them.
import { create } from "@bufbuild/protobuf";
import type * as grpc from "@grpc/grpc-js";
import {
  type PostReceivePackRequest,
  type PostReceivePackResponse,
  PostReceivePackResponseSchema,
} from "../../../gen/smarthttp_pb.js";
import { Code, RpcError } from "../../../shared/grpc/errors.js";
import { callSignal } from "../repository/repository-service.js";
import type { TransportDeps, TransportMetrics } from "../ssh/git-options.js";
import { GitRunError, runGit } from "../ssh/git-process.js";
import { prepareReceivePack } from "../ssh/receive-pack-setup.js";
import { firstRequest, pumpRequestsToStdin, requestReader, sendMessage } from "../ssh/rpc-streams.js";

type Call = grpc.ServerDuplexStream<PostReceivePackRequest, PostReceivePackResponse>;

export async function postReceivePack(deps: TransportDeps, metrics: TransportMetrics, call: Call): Promise<void> {
  const signal = callSignal(call);
  const requests = requestReader<PostReceivePackRequest>(call);
  const req = await firstRequest(requests);
  if (!req) throw new RpcError(Code.INTERNAL, "EOF");
  const { repository, repoPath, config, env, hooks } = await prepareReceivePack(deps, metrics, call, req, {
    service: "gitaly.SmartHTTPService",
    method: "PostReceivePack",
    protocol: "http",
    firstData: { length: req.data.length, message: "non-empty Data" },
  });

  try {
    await runGit({
      git: deps.git,
      command: {
        repoPath,
        subcommand: "receive-pack",
        flags: ["--stateless-rpc"],
        args: [repoPath],
        env: { ...env, ...hooks.env },
        // The hooks' settings come last: a client option must not switch them off.
        config: [...config, ...hooks.config],
      },
      callSignal: signal,
      feedStdin: (stdin) => pumpRequestsToStdin(requests, (r) => r.data, stdin),
      onStdout: (chunk) => sendMessage(call, create(PostReceivePackResponseSchema, { data: chunk })),
    });
  } catch (err) {
    if (!(err instanceof GitRunError)) throw err;
    if (err.exitStatus === undefined && err.code === Code.CANCELLED) throw err;
    deps.logger.warn({ repository: repository.relativePath, stderr: err.stderr.slice(-2000) }, "receive-pack failed");
    const how = err.exitStatus !== undefined ? `exit status ${err.exitStatus}` : err.message;
    throw new RpcError(Code.FAILED_PRECONDITION, `waiting for receive-pack: ${how}`, { cause: err });
  }
}
