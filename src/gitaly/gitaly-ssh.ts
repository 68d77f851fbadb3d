#!/usr/bin/env node
import type { DescMessage, MessageShape } from "@bufbuild/protobuf";
import { create, fromJsonString } from "@bufbuild/protobuf";
import * as grpc from "@grpc/grpc-js";
import {
  SSHReceivePackRequestSchema,
  SSHService,
  SSHUploadArchiveRequestSchema,
  SSHUploadPackWithSidechannelRequestSchema,
} from "../gen/ssh_pb.js";
import { bearerToken, v2AuthInterceptor } from "../shared/auth/v2-token.js";
import { dialBackchannel, parseBackchannelAddress } from "../shared/grpc/backchannel-client.js";
import { createClient } from "../shared/grpc/service.js";
// gitaly-ssh: the transport git uses to talk to a Gitaly node as if it were ssh. git
// runs it as its ssh command (core.sshCommand / GIT_SSH_COMMAND) with the remote
// command as the last argument (`git-upload-pack '/x.git'`, `git-receive-pack ...`,
// `git-upload-archive ...`), which picks the RPC; an explicit first argument
// `upload-pack`, `receive-pack` or `upload-archive` (upstream's usage) does too.
//
// - upload-pack: dials a backchannel and calls SSHUploadPackWithSidechannel; git's
//   stdin goes to upload-pack through the sidechannel, and upload-pack's sideband
//   output comes back to git's stdout (band 1) and stderr (band 2).
// - receive-pack / upload-archive: SSHReceivePack / SSHUploadArchive over a bidi
//   stream; stdin goes out as `stdin` messages, `stdout`/`stderr` come back, and the
//   final exit status becomes ours.
//
// Everything it needs arrives in the environment, never on the command line (which
// other users of the machine can read):
//   GITALY_ADDRESS   tcp://host:port, unix:/path or tls://host:port of the node
//   GITALY_TOKEN     the node's auth token
//   GITALY_PAYLOAD   the request as protobuf JSON (repository, git_config_options,
//                    gl_id, gl_repository, gl_username for receive-pack); fields the
//                    RPC does not have are ignored
//   GIT_PROTOCOL     set by git itself for protocol v2
import { clusterRootCertificates } from "../shared/tls/roots.js";
import { BAND_DATA, BAND_ERROR, BAND_PROGRESS, decodeSideband, PktLineParser } from "./git/pktline.js";

type SshRpc = "upload-pack" | "receive-pack" | "upload-archive";
const RPCS: readonly SshRpc[] = ["upload-pack", "receive-pack", "upload-archive"];

/** The RPC for gitaly-ssh's arguments; undefined when they name none. */
function rpcFromArgs(args: readonly string[]): SshRpc | undefined {
  const first = args[0];
  if (first !== undefined && (RPCS as readonly string[]).includes(first)) return first as SshRpc;
  const command = args[args.length - 1] ?? "";
  const m = /^git[- ](upload-pack|receive-pack|upload-archive)(?:\s|$)/.exec(command);
  return m ? (m[1] as SshRpc) : undefined;
}

function fail(message: string, status = 1): never {
  process.stderr.write(`gitaly-ssh: ${message}\n`);
  process.exit(status);
}

function parsePayload<D extends DescMessage>(schema: D, text: string): MessageShape<D> {
  try {
    return fromJsonString(schema, text, { ignoreUnknownFields: true });
  } catch (err) {
    fail(`GITALY_PAYLOAD is not a valid request: ${(err as Error).message}`);
  }
}

function writeStdout(data: Uint8Array): Promise<void> {
  if (process.stdout.write(data)) return Promise.resolve();
  return new Promise((resolve) => process.stdout.once("drain", resolve));
}

async function uploadPack(address: string, token: string, payloadText: string): Promise<number> {
  const request = parsePayload(SSHUploadPackWithSidechannelRequestSchema, payloadText);
  if (process.env.GIT_PROTOCOL) request.gitProtocol = process.env.GIT_PROTOCOL;
  // tls:// nodes: trust the cluster CA (SSL_CERT_FILE), like the gRPC dial below.
  const ca = clusterRootCertificates();
  const conn = await dialBackchannel(address, ca ? { ca } : {});
  try {
    await conn.withSidechannel(
      async (sidechannel) => {
        // git's stdin -> the node's upload-pack, pkt-line framed, flush at EOF.
        const upstream = (async () => {
          for await (const chunk of process.stdin) await sidechannel.write(chunk as Buffer);
          await sidechannel.closeWrite();
        })().catch(() => undefined);
        // Sideband output -> our stdout/stderr.
        const parser = new PktLineParser();
        for await (const chunk of sidechannel.readable) {
          parser.feed(chunk as Buffer);
          for (let p = parser.next(); p; p = parser.next()) {
            if (p.kind !== "data") continue;
            const { band, data } = decodeSideband(p.payload);
            if (band === BAND_DATA) await writeStdout(data);
            else if (band === BAND_PROGRESS || band === BAND_ERROR) process.stderr.write(data);
          }
        }
        void upstream;
      },
      (metadata) => {
        if (token) metadata.set("authorization", bearerToken(token));
        return conn.unary(SSHService.method.sSHUploadPackWithSidechannel, request, { metadata });
      },
    );
  } finally {
    await conn.close();
  }
  return 0;
}

/** grpc-js target and credentials for a GITALY_ADDRESS. */
function grpcTarget(address: string): { target: string; credentials: grpc.ChannelCredentials } {
  const parsed = parseBackchannelAddress(address);
  if (parsed.kind === "unix") return { target: `unix:${parsed.path}`, credentials: grpc.credentials.createInsecure() };
  const host = parsed.host.includes(":") ? `[${parsed.host}]` : parsed.host;
  const credentials =
    parsed.kind === "tls" ? grpc.credentials.createSsl(clusterRootCertificates()) : grpc.credentials.createInsecure();
  return { target: `${host}:${parsed.port}`, credentials };
}

interface StdioResponse {
  stdout: Uint8Array;
  stderr: Uint8Array;
  exitStatus?: { value: number };
}

/** Runs SSHReceivePack or SSHUploadArchive with our stdio; returns the remote exit status. */
async function bidiCommand(
  rpc: "receive-pack" | "upload-archive",
  address: string,
  token: string,
  payloadText: string,
) {
  const { target, credentials } = grpcTarget(address);
  const channel = new grpc.Client(target, credentials, { interceptors: token ? [v2AuthInterceptor(token)] : [] });
  const client = createClient(SSHService, channel);
  const gitProtocol = process.env.GIT_PROTOCOL;
  let call: grpc.ClientDuplexStream<unknown, StdioResponse>;
  let first: unknown;
  let stdinMessage: (chunk: Uint8Array) => unknown;
  if (rpc === "receive-pack") {
    const request = parsePayload(SSHReceivePackRequestSchema, payloadText);
    if (gitProtocol) request.gitProtocol = gitProtocol;
    request.stdin = new Uint8Array();
    call = client.sSHReceivePack() as grpc.ClientDuplexStream<unknown, StdioResponse>;
    first = request;
    stdinMessage = (chunk) => create(SSHReceivePackRequestSchema, { stdin: chunk });
  } else {
    const request = parsePayload(SSHUploadArchiveRequestSchema, payloadText);
    request.stdin = new Uint8Array();
    call = client.sSHUploadArchive() as grpc.ClientDuplexStream<unknown, StdioResponse>;
    first = request;
    stdinMessage = (chunk) => create(SSHUploadArchiveRequestSchema, { stdin: chunk });
  }

  let exitStatus: number | undefined;
  const finished = new Promise<grpc.StatusObject>((resolve) => call.on("status", resolve));
  const drained = new Promise<grpc.ServiceError | undefined>((resolve) => {
    call.on("end", () => resolve(undefined));
    call.on("error", (err: grpc.ServiceError) => resolve(err));
  });
  call.on("data", (resp: StdioResponse) => {
    if (resp.stderr.length > 0) process.stderr.write(resp.stderr);
    if (resp.stdout.length > 0 && !process.stdout.write(resp.stdout)) {
      call.pause();
      process.stdout.once("drain", () => call.resume());
    }
    if (resp.exitStatus) exitStatus = resp.exitStatus.value;
  });

  call.write(first);
  const upstream = (async () => {
    for await (const chunk of process.stdin) {
      if (!call.write(stdinMessage(chunk as Buffer))) await new Promise((r) => call.once("drain", r));
    }
    call.end();
  })().catch(() => call.end());

  const err = await drained;
  await finished;
  void upstream;
  channel.close();
  if (err) {
    process.stderr.write(`gitaly-ssh: ${err.details || err.message}\n`);
    return exitStatus !== undefined && exitStatus !== 0 ? exitStatus : 1;
  }
  return exitStatus ?? 0;
}

async function main(): Promise<number> {
  const args = process.argv.slice(2);
  const rpc = rpcFromArgs(args);
  if (!rpc) fail(`cannot tell the RPC from the arguments ${JSON.stringify(args)}`);
  const address = process.env.GITALY_ADDRESS ?? fail("GITALY_ADDRESS is not set");
  const payloadText = process.env.GITALY_PAYLOAD ?? fail("GITALY_PAYLOAD is not set");
  const token = process.env.GITALY_TOKEN ?? "";
  if (rpc === "upload-pack") return uploadPack(address, token, payloadText);
  return bidiCommand(rpc, address, token, payloadText);
}

main().then(
  (status) => process.exit(status),
  (err: unknown) => fail(err instanceof Error ? err.message : String(err)),
);
