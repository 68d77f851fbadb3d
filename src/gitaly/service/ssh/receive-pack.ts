// SSHReceivePack: `git receive-pack <repo>` driven over the bidi stream. The first
// message names the repository and the pusher; the `stdin` of every message goes to
// git, git's stdout and stderr come back as messages, and the last message carries
// its exit status. The push runs this node's hooks (pre-receive, update,
// post-receive, reference-transaction) with protocol "ssh".
import { create, type MessageInitShape } from "@bufbuild/protobuf";
import type * as grpc from "@grpc/grpc-js";
import {
  type SSHReceivePackRequest,
  type SSHReceivePackResponse,
  SSHReceivePackResponseSchema,
} from "../../../gen/ssh_pb.js";
import { Code, RpcError } from "../../../shared/grpc/errors.js";
import { callSignal } from "../repository/repository-service.js";
import type { TransportDeps, TransportMetrics } from "./git-options.js";
import { CLIENT_HUNG_UP, GitRunError, runGit } from "./git-process.js";
import { prepareReceivePack } from "./receive-pack-setup.js";
import { firstRequest, pumpRequestsToStdin, requestReader, sendMessage } from "./rpc-streams.js";

type Call = grpc.ServerDuplexStream<SSHReceivePackRequest, SSHReceivePackResponse>;

export async function sshReceivePack(deps: TransportDeps, metrics: TransportMetrics, call: Call): Promise<void> {
  const signal = callSignal(call);
  const requests = requestReader<SSHReceivePackRequest>(call);
  const req = await firstRequest(requests);
  if (!req) throw new RpcError(Code.INTERNAL, "EOF");
  const { repoPath, config, env, hooks } = await prepareReceivePack(deps, metrics, call, req, {
    service: "gitaly.SSHService",
    method: "SSHReceivePack",
    protocol: "ssh",
    firstData: { length: req.stdin.length, message: "non-empty data in first request" },
  });

  const send = (message: MessageInitShape<typeof SSHReceivePackResponseSchema>) =>
    sendMessage(call, create(SSHReceivePackResponseSchema, message));
  try {
    await runGit({
      git: deps.git,
      command: {
        repoPath,
        subcommand: "receive-pack",
        args: [repoPath],
        env: { ...env, ...hooks.env },
        // The hooks' settings come last: a client option must not switch them off.
        config: [...config, ...hooks.config],
      },
      callSignal: signal,
      feedStdin: (stdin) => pumpRequestsToStdin(requests, (r) => r.stdin, stdin),
      onStdout: (chunk) => send({ stdout: chunk }),
      onStderr: (chunk) => send({ stderr: chunk }),
    });
  } catch (err) {
    if (!(err instanceof GitRunError)) throw err;
    // The client learns the exit status and the RPC still fails, as upstream does.
    if (err.exitStatus !== undefined) await send({ exitStatus: { value: err.exitStatus } });
    if (err.stderr === CLIENT_HUNG_UP) throw new RpcError(Code.CANCELLED, "user canceled the push");
    if (err.code === Code.CANCELLED) throw err;
    const how = err.exitStatus !== undefined ? `exit status ${err.exitStatus}` : err.message;
    throw new RpcError(Code.INTERNAL, `cmd wait: ${how}`, { cause: err });
  }
  await send({ exitStatus: { value: 0 } });
}
