// SSHUploadPackWithSidechannel driven by hand over a backchannel: sideband framing,
// negotiation statistics, upstream's failure statuses, and the negotiation deadline.
import { join } from "node:path";
import * as grpc from "@grpc/grpc-js";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { SSHUploadPackWithSidechannelResponse } from "../../../src/gen/ssh_pb.js";
import { SSHService } from "../../../src/gen/ssh_pb.js";
import {
  BAND_DATA,
  BAND_PROGRESS,
  decodePktLines,
  decodeSideband,
  delimPkt,
  encodePktLine,
  flushPkt,
} from "../../../src/gitaly/git/pktline.js";
import { type BackchannelConnection, dialBackchannel } from "../../../src/shared/grpc/backchannel-client.js";
import { createStandardRepository, type StandardRepository } from "../../harness/git-fixtures.js";
import { metricValue } from "../../harness/gitaly.js";
import { expectStatus, expectStatusMatching } from "./repository-helpers.js";
import { startTransportNode, type TransportNode } from "./smarthttp-harness.js";

/** Splits upload-pack's sideband output into what went to stdout and to stderr. */
function unband(data: Buffer): { stdout: Buffer; stderr: string } {
  const { packets, rest } = decodePktLines(data);
  expect(rest.length).toBe(0);
  const out: Buffer[] = [];
  let err = "";
  for (const p of packets) {
    expect(p.kind).toBe("data");
    if (p.kind !== "data") continue;
    const { band, data: payload } = decodeSideband(p.payload);
    if (band === BAND_DATA) out.push(payload);
    else if (band === BAND_PROGRESS) err += payload.toString();
  }
  return { stdout: Buffer.concat(out), stderr: err };
}

describe("SSHUploadPackWithSidechannel RPC", () => {
  let node: TransportNode;
  let slowNode: TransportNode;
  let fixture: StandardRepository;
  let conn: BackchannelConnection;
  const repository = { storageName: "default", relativePath: "group/project.git" };

  beforeAll(async () => {
    node = await startTransportNode();
    slowNode = await startTransportNode({ extraToml: `[timeout]\nupload_pack_negotiation = "1s"` });
    fixture = createStandardRepository(join(node.storage.path, "group/project.git"));
    createStandardRepository(join(slowNode.storage.path, "group/project.git"));
    conn = await dialBackchannel(`tcp://${node.address}`);
  });
  afterAll(async () => {
    await conn?.close();
    await node?.stop();
    await slowNode?.stop();
  });

  function uploadPack(
    input: Buffer,
    init: { gitProtocol?: string; relativePath?: string } = {},
    via: BackchannelConnection = conn,
  ): Promise<{ response: SSHUploadPackWithSidechannelResponse; sidechannel: Buffer }> {
    return via.withSidechannel(
      async (sc) => {
        await sc.write(input);
        await sc.closeWrite();
        return sc.readAll();
      },
      (metadata) =>
        via.unary(
          SSHService.method.sSHUploadPackWithSidechannel,
          {
            repository: { ...repository, relativePath: init.relativePath ?? repository.relativePath },
            gitProtocol: init.gitProtocol ?? "",
          },
          { metadata },
        ),
    );
  }

  const v2Fetch = (...lines: string[]) =>
    Buffer.concat([
      encodePktLine("command=fetch\n"),
      encodePktLine("agent=git/2.39.5\n"),
      delimPkt,
      ...lines.map((l) => encodePktLine(`${l}\n`)),
      flushPkt,
    ]);

  it("sends upload-pack's output as sideband and returns the statistics", async () => {
    const { response, sidechannel } = await uploadPack(v2Fetch(`want ${fixture.commits.second}`, "ofs-delta", "done"), {
      gitProtocol: "version=2",
    });
    const { stdout } = unband(sidechannel);
    // Stateful v2: the capability advertisement, then the fetch response's "packfile"
    // section, whose pack arrives in upload-pack's own side-band 1.
    const inner = decodePktLines(stdout).packets.map((p) => (p.kind === "data" ? p.payload : Buffer.alloc(0)));
    expect(inner[0]?.toString()).toBe("version 2\n");
    expect(inner.map((p) => p.toString())).toContain("packfile\n");
    expect(inner.some((p) => p[0] === 1 && p.subarray(1, 5).toString() === "PACK")).toBe(true);
    const stats = response.packfileNegotiationStatistics;
    expect(stats?.wants).toBe(1n);
    // "done" ends the negotiation and is not counted: command, agent, delim, want, ofs-delta.
    expect(stats?.packets).toBe(5n);
    const text = await node.registry.metrics();
    expect(
      metricValue(text, "gitaly_ssh_packfile_negotiation_requests_total", { git_negotiation_feature: "fetch" }),
    ).toBeGreaterThan(0);
    expect(
      metricValue(text, "gitaly_git_protocol_requests_total", {
        grpc_service: "gitaly.SSHService",
        grpc_method: "SSHUploadPackWithSidechannel",
        git_protocol: "v2",
      }),
    ).toBeGreaterThan(0);
  });

  it("succeeds with empty statistics when the client sends nothing", async () => {
    const { response } = await uploadPack(Buffer.alloc(0), { gitProtocol: "version=2" });
    expect(response.packfileNegotiationStatistics?.wants).toBe(0n);
    expect(response.packfileNegotiationStatistics?.packets).toBe(0n);
  });

  it("fails with git's stderr when upload-pack refuses the request", async () => {
    const missing = "1".repeat(40);
    await expectStatus(
      uploadPack(Buffer.concat([encodePktLine(`want ${missing} multi_ack\n`), flushPkt, encodePktLine("done\n")])),
      grpc.status.INTERNAL,
      `running upload-pack: cmd wait: exit status 128, stderr: "fatal: git upload-pack: not our ref ${missing}\\n"`,
    );
    await expectStatus(
      uploadPack(encodePktLine("foobar"), { gitProtocol: "version=2" }),
      grpc.status.INTERNAL,
      `running upload-pack: cmd wait: exit status 128, stderr: "fatal: unknown capability 'foobar'\\n"`,
    );
  });

  it("calls a truncated request a cancelled one", async () => {
    const input = Buffer.concat([encodePktLine("command=fetch\n"), Buffer.from("0011agent")]);
    await expectStatus(
      uploadPack(input, { gitProtocol: "version=2" }),
      grpc.status.CANCELLED,
      "running upload-pack: user canceled the request",
    );
  });

  it("rejects bad input before opening the sidechannel", async () => {
    await expectStatus(
      uploadPack(Buffer.alloc(0), { relativePath: "" }),
      grpc.status.INVALID_ARGUMENT,
      "repository path not set",
    );
    await expectStatus(
      uploadPack(Buffer.alloc(0), { relativePath: "doesnt/exist.git" }),
      grpc.status.NOT_FOUND,
      "repository not found",
    );
  });

  it("words a sidechannel failure as upstream does", async () => {
    await expectStatusMatching(
      conn.unary(
        SSHService.method.sSHUploadPackWithSidechannel,
        { repository },
        { metadata: { "gitaly-sidechannel-id": "424242" } },
      ),
      grpc.status.INTERNAL,
      /^opennig sidechannel: sidechannel: receive confirmation: /,
    );
  });

  it("gives up on a client that does not finish negotiating", async () => {
    const slow = await dialBackchannel(`tcp://${slowNode.address}`);
    try {
      const err = await slow
        .withSidechannel(
          async (sc) => {
            // Wants, but never "done" and never the end of input.
            await sc.write(Buffer.concat([encodePktLine(`want ${fixture.commits.second} multi_ack\n`), flushPkt]));
            return sc.readAll().catch(() => Buffer.alloc(0));
          },
          (metadata) => slow.unary(SSHService.method.sSHUploadPackWithSidechannel, { repository }, { metadata }),
        )
        .then(
          () => undefined,
          (e: grpc.ServiceError) => e,
        );
      expect(err?.code).toBe(grpc.status.DEADLINE_EXCEEDED);
      expect(err?.details).toBe("running upload-pack: waiting for negotiation: context canceled");
    } finally {
      await slow.close();
    }
  });
});
