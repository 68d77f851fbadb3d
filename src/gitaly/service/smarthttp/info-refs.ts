// InfoRefsUploadPack / InfoRefsReceivePack: the body of git's `GET info/refs?service=`
// — the `# service=git-<svc>` pkt-line and a flush, then the reference advertisement
// of `git <svc> --stateless-rpc --advertise-refs`, streamed as git writes it.
import { create } from "@bufbuild/protobuf";
import type * as grpc from "@grpc/grpc-js";
import { type InfoRefsRequest, type InfoRefsResponse, InfoRefsResponseSchema } from "../../../gen/smarthttp_pb.js";
import { Code, RpcError } from "../../../shared/grpc/errors.js";
import { GitCommandError } from "../../git/command.js";
import { encodePktLine, flushPkt } from "../../git/pktline.js";
import { callSignal } from "../repository/repository-service.js";
import {
  parseGitConfigOptions,
  protocolEnvForCall,
  type TransportDeps,
  type TransportMetrics,
} from "../ssh/git-options.js";

export type AdvertisedService = "upload-pack" | "receive-pack";

/** The two pkt-lines before the advertisement. */
export function serviceAnnouncement(service: AdvertisedService): Buffer {
  return Buffer.concat([encodePktLine(`# service=git-${service}\n`), flushPkt]);
}

export async function* infoRefs(
  deps: TransportDeps,
  metrics: TransportMetrics,
  service: AdvertisedService,
  req: InfoRefsRequest,
  call: grpc.ServerWritableStream<InfoRefsRequest, InfoRefsResponse>,
): AsyncGenerator<InfoRefsResponse> {
  const signal = callSignal(call);
  const repoPath = deps.locator.repositoryPath(req.repository);
  const config = parseGitConfigOptions(req.gitConfigOptions);
  const env = protocolEnvForCall(
    metrics,
    deps.logger,
    {
      service: "gitaly.SmartHTTPService",
      method: service === "upload-pack" ? "InfoRefsUploadPack" : "InfoRefsReceivePack",
    },
    req.gitProtocol,
  );
  // Spawned before the first message: a bad option fails the call before any data.
  const proc = deps.git.spawn({
    repoPath,
    subcommand: service,
    flags: ["--stateless-rpc", "--advertise-refs"],
    args: [repoPath],
    env,
    config,
    signal,
  });
  let finished = false;
  try {
    yield create(InfoRefsResponseSchema, { data: serviceAnnouncement(service) });
    try {
      for await (const chunk of proc.stdout) yield create(InfoRefsResponseSchema, { data: chunk as Buffer });
    } catch (readErr) {
      // Reading broke because git was killed: its exit status says why.
      await proc.wait();
      throw readErr;
    }
    await proc.wait();
    finished = true;
  } catch (err) {
    if (!(err instanceof GitCommandError)) throw err;
    if (err.aborted) throw new RpcError(Code.CANCELLED, "context canceled", { cause: err });
    const how = err.exitCode !== null ? `exit status ${err.exitCode}` : `signal: ${err.signal ?? "unknown"}`;
    deps.logger.warn({ err, repository: req.repository?.relativePath, service }, "advertising references failed");
    throw new RpcError(Code.INTERNAL, `wait: ${how}`, { cause: err });
  } finally {
    // The consumer stopped early (client gone): git must not linger.
    if (!finished) proc.kill();
  }
}
