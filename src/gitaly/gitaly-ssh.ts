#!/usr/bin/env node
// gitaly-ssh: the transport git uses when one Gitaly fetches from another. git runs
// it as its ssh command (core.sshCommand); instead of ssh, it dials the source node
// over a backchannel connection and calls SSHUploadPackWithSidechannel: git's stdin
// goes to the source's upload-pack through the sidechannel, and upload-pack's
// sideband output comes back to git's stdout (band 1) and stderr (band 2).
//
// Everything it needs arrives in the environment, never on the command line (which
// other users of the machine can read):
//   GITALY_ADDRESS   tcp://host:port, unix:/path or tls://host:port of the source
//   GITALY_TOKEN     the source's auth token
//   GITALY_PAYLOAD   JSON of the SSHUploadPackWithSidechannelRequest (repository, git_config_options)
//   GIT_PROTOCOL     set by git itself for protocol v2
import { SSHService } from "../gen/ssh_pb.js";
import { bearerToken } from "../shared/auth/v2-token.js";
import { dialBackchannel } from "../shared/grpc/backchannel-client.js";
import { BAND_DATA, BAND_ERROR, BAND_PROGRESS, decodeSideband, PktLineParser } from "./git/pktline.js";

interface Payload {
  repository: { storageName: string; relativePath: string; glRepository?: string };
  gitConfigOptions?: string[];
}

function fail(message: string): never {
  process.stderr.write(`gitaly-ssh: ${message}\n`);
  process.exit(1);
}

async function main(): Promise<void> {
  const address = process.env.GITALY_ADDRESS ?? fail("GITALY_ADDRESS is not set");
  const payloadText = process.env.GITALY_PAYLOAD ?? fail("GITALY_PAYLOAD is not set");
  let payload: Payload;
  try {
    payload = JSON.parse(payloadText) as Payload;
  } catch (err) {
    fail(`GITALY_PAYLOAD is not JSON: ${(err as Error).message}`);
  }
  const token = process.env.GITALY_TOKEN ?? "";
  const conn = await dialBackchannel(address);
  try {
    await conn.withSidechannel(
      async (sidechannel) => {
        // git's stdin -> the source's upload-pack, pkt-line framed, flush at EOF.
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
            if (band === BAND_DATA) {
              if (!process.stdout.write(data)) await new Promise((r) => process.stdout.once("drain", r));
            } else if (band === BAND_PROGRESS || band === BAND_ERROR) {
              process.stderr.write(data);
            }
          }
        }
        void upstream;
      },
      (metadata) => {
        if (token) metadata.set("authorization", bearerToken(token));
        return conn.unary(
          SSHService.method.sSHUploadPackWithSidechannel,
          {
            repository: payload.repository,
            gitConfigOptions: payload.gitConfigOptions ?? [],
            gitProtocol: process.env.GIT_PROTOCOL ?? "",
          },
          { metadata },
        );
      },
    );
  } finally {
    await conn.close();
  }
}

main().then(
  () => process.exit(0),
  (err: unknown) => fail(err instanceof Error ? err.message : String(err)),
);
