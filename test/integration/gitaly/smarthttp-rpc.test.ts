// SmartHTTPService at the RPC level: what InfoRefs* stream, what
// PostUploadPackWithSidechannel sends and returns for hand-written requests, and
// upstream's codes and messages for bad input.
import { execFileSync } from "node:child_process";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { create, type MessageInitShape } from "@bufbuild/protobuf";
import * as grpc from "@grpc/grpc-js";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import {
  type PostReceivePackRequest,
  PostReceivePackRequestSchema,
  type PostUploadPackWithSidechannelResponse,
  SmartHTTPService,
} from "../../../src/gen/smarthttp_pb.js";
import { decodePktLines, encodePktLine, flushPkt } from "../../../src/gitaly/git/pktline.js";
import { type BackchannelConnection, dialBackchannel } from "../../../src/shared/grpc/backchannel-client.js";
import { createClient, type PromiseClient } from "../../../src/shared/grpc/service.js";
import {
  createEmptyRepository,
  createStandardRepository,
  git,
  isolatedGitEnv,
  type StandardRepository,
} from "../../harness/git-fixtures.js";
import { collectData, drain, expectStatus, expectStatusMatching } from "./repository-helpers.js";
import { startTransportNode, type TransportNode } from "./smarthttp-harness.js";

/** git with binary input and output. */
function gitBytes(repo: string, args: string[], input: Buffer): Buffer {
  return execFileSync("git", ["--git-dir", repo, ...args], { env: isolatedGitEnv(), input, maxBuffer: 64 << 20 });
}

type Client = PromiseClient<(typeof SmartHTTPService)["method"]>;

/** The data packets of a pkt-line stream as strings, "0000" for flushes. */
function pktStrings(data: Buffer): string[] {
  const { packets, rest } = decodePktLines(data);
  expect(rest.length).toBe(0);
  return packets.map((p) => (p.kind === "data" ? p.payload.toString("utf8") : p.kind === "flush" ? "0000" : p.kind));
}

/** `<oid> <ref>` lines of a v0 advertisement, capabilities stripped. */
function advertisedRefs(lines: string[]): string[] {
  return lines
    .filter((l) => /^[0-9a-f]{40} /.test(l))
    .map((l) => (l.split("\0")[0] ?? "").replace(/\n$/, ""))
    .filter((l) => !l.endsWith(" capabilities^{}"));
}

function expectedRefs(path: string, patterns = ["refs/heads", "refs/tags"]): string[] {
  const head = git(path, ["rev-parse", "HEAD"]).trim();
  const lines = git(path, [
    "for-each-ref",
    "--format=%(objectname) %(refname)%(if)%(*objectname)%(then)\n%(*objectname) %(refname)^{}%(end)",
    ...patterns,
  ])
    .split("\n")
    .filter(Boolean);
  return [`${head} HEAD`, ...lines];
}

describe("SmartHTTPService RPCs", () => {
  let node: TransportNode;
  let slowNode: TransportNode;
  let client: Client;
  let fixture: StandardRepository;
  let conn: BackchannelConnection;
  const work = mkdtempSync(join(tmpdir(), "smarthttp-rpc-"));

  beforeAll(async () => {
    node = await startTransportNode();
    // Negotiation deadline short enough for a test to wait it out.
    slowNode = await startTransportNode({ extraToml: `[timeout]\nupload_pack_negotiation = "1s"` });
    client = createClient(SmartHTTPService, node.channel());
    fixture = createStandardRepository(join(node.storage.path, "group/project.git"));
    createStandardRepository(join(slowNode.storage.path, "group/project.git"));
    conn = await dialBackchannel(`tcp://${node.address}`);
  });
  afterAll(async () => {
    await conn?.close();
    await node?.stop();
    await slowNode?.stop();
    rmSync(work, { recursive: true, force: true });
  });

  const repository = { storageName: "default", relativePath: "group/project.git" };

  describe("InfoRefs", () => {
    it("advertises upload-pack refs after the service announcement", async () => {
      const data = await collectData(client.infoRefsUploadPack({ repository }));
      expect(data.subarray(0, 34).toString()).toBe("001e# service=git-upload-pack\n0000");
      const lines = pktStrings(data);
      expect(lines.at(-1)).toBe("0000");
      expect(advertisedRefs(lines)).toEqual(expectedRefs(fixture.path));
      // Capabilities ride on the first ref; the node's upload-pack config shows in them.
      expect(lines[2]).toContain("allow-reachable-sha1-in-want");
      expect(lines[2]).toContain("filter");
    });

    it("speaks protocol v2 when asked", async () => {
      const lines = pktStrings(await collectData(client.infoRefsUploadPack({ repository, gitProtocol: "version=2" })));
      expect(lines.slice(0, 3)).toEqual(["# service=git-upload-pack\n", "0000", "version 2\n"]);
      expect(lines).toContain("ls-refs=unborn\n");
    });

    it("advertises receive-pack refs with push capabilities", async () => {
      const data = await collectData(client.infoRefsReceivePack({ repository }));
      const lines = pktStrings(data);
      expect(lines[0]).toBe("# service=git-receive-pack\n");
      expect(lines[2]).toContain("report-status");
      expect(lines[2]).toContain("push-options");
      expect(advertisedRefs(lines)).toEqual(
        expectedRefs(fixture.path).filter((l) => !l.endsWith(" HEAD") && !l.endsWith("^{}")),
      );
    });

    it("applies git_config_options", async () => {
      const lines = pktStrings(
        await collectData(
          client.infoRefsUploadPack({ repository, gitConfigOptions: ["uploadpack.hideRefs=refs/tags"] }),
        ),
      );
      expect(advertisedRefs(lines)).toEqual(expectedRefs(fixture.path, ["refs/heads"]));
    });

    it("serves an unknown git_protocol as v0, like upstream", async () => {
      const lines = pktStrings(await collectData(client.infoRefsUploadPack({ repository, gitProtocol: "version=3" })));
      expect(advertisedRefs(lines)).toEqual(expectedRefs(fixture.path));
      const text = await node.registry.metrics();
      expect(text).toContain(
        'gitaly_git_protocol_requests_total{grpc_service="gitaly.SmartHTTPService",grpc_method="InfoRefsUploadPack",git_protocol="invalid"} 1',
      );
    });

    it("rejects bad input with upstream's codes", async () => {
      const call = (req: Parameters<Client["infoRefsUploadPack"]>[0]) => drain(client.infoRefsUploadPack(req));
      await expectStatus(call({}), grpc.status.INVALID_ARGUMENT, "repository not set");
      await expectStatus(
        call({ repository: { storageName: "nope", relativePath: "group/project.git" } }),
        grpc.status.INVALID_ARGUMENT,
        "storage name not found",
      );
      await expectStatus(
        call({ repository: { storageName: "default", relativePath: "doesnt/exist" } }),
        grpc.status.NOT_FOUND,
        "repository not found",
      );
      await expectStatus(
        call({ repository, gitConfigOptions: ["uploadpack.hideRefs"] }),
        grpc.status.INVALID_ARGUMENT,
        'cannot convert invalid config key: "uploadpack.hideRefs"',
      );
      await expectStatusMatching(
        call({ repository, gitConfigOptions: ["not a key=1"] }),
        grpc.status.INVALID_ARGUMENT,
        /config key "not a key" is not valid/,
      );
      await expectStatus(
        call({ repository, gitProtocol: "--upload-pack=touch /tmp/x" }),
        grpc.status.INVALID_ARGUMENT,
        'invalid git protocol: "--upload-pack=touch /tmp/x"',
      );
      await expectStatus(
        drain(client.infoRefsReceivePack({ repository: { storageName: "default", relativePath: "doesnt/exist" } })),
        grpc.status.NOT_FOUND,
        "repository not found",
      );
    });
  });

  describe("PostUploadPackWithSidechannel", () => {
    function uploadPack(
      request: string | Buffer,
      init: {
        gitProtocol?: string;
        gitConfigOptions?: string[];
        relativePath?: string;
        on?: BackchannelConnection;
      } = {},
    ): Promise<{ response: PostUploadPackWithSidechannelResponse; sidechannel: Buffer }> {
      const via = init.on ?? conn;
      return via.withSidechannel(
        async (sc) => {
          await sc.write(request);
          await sc.closeWrite();
          return sc.readAll();
        },
        (metadata) =>
          via.unary(
            SmartHTTPService.method.postUploadPackWithSidechannel,
            {
              repository: { ...repository, relativePath: init.relativePath ?? repository.relativePath },
              gitProtocol: init.gitProtocol ?? "",
              gitConfigOptions: init.gitConfigOptions ?? [],
            },
            { metadata },
          ),
      );
    }

    const v0Want = (oid: string, caps = "ofs-delta agent=test/1.0") =>
      Buffer.concat([encodePktLine(`want ${oid} ${caps}\n`), flushPkt, encodePktLine("done\n")]);

    it("answers a v0 fetch with a raw pack and returns the negotiation statistics", async () => {
      const { response, sidechannel } = await uploadPack(v0Want(fixture.commits.second));
      // Raw upload-pack output: "NAK" then the pack itself (no side-band was asked for).
      expect(sidechannel.subarray(0, 8).toString()).toBe("0008NAK\n");
      expect(sidechannel.subarray(8, 12).toString()).toBe("PACK");
      const receiver = createEmptyRepository(join(work, "receiver.git")).path;
      gitBytes(receiver, ["index-pack", "--stdin"], sidechannel.subarray(8));
      expect(git(receiver, ["cat-file", "-t", fixture.commits.second]).trim()).toBe("commit");
      expect(git(receiver, ["cat-file", "-p", `${fixture.commits.second}:src/hello.txt`])).toBe("hello, world\n");
      const stats = response.packfileNegotiationStatistics;
      expect(stats?.wants).toBe(1n);
      expect(stats?.haves).toBe(0n);
      expect(stats?.caps).toEqual(["ofs-delta", "agent=test/1.0"]);
      expect(stats?.packets).toBe(2n);
    });

    it("counts haves, shallows, deepen and filter", async () => {
      const request = Buffer.concat([
        encodePktLine(`want ${fixture.commits.merge} ofs-delta shallow filter\n`),
        encodePktLine(`shallow ${fixture.commits.binary}\n`),
        encodePktLine("deepen 1\n"),
        encodePktLine("filter blob:none\n"),
        flushPkt,
        encodePktLine(`have ${fixture.commits.initial}\n`),
        encodePktLine("done\n"),
      ]);
      const { response } = await uploadPack(request);
      const stats = response.packfileNegotiationStatistics;
      expect({
        wants: stats?.wants,
        haves: stats?.haves,
        shallows: stats?.shallows,
        deepen: stats?.deepen,
        filter: stats?.filter,
      }).toEqual({ wants: 1n, haves: 1n, shallows: 1n, deepen: "deepen 1", filter: "blob:none" });
    });

    it("fails with FailedPrecondition when upload-pack refuses the request", async () => {
      await expectStatus(
        uploadPack(v0Want("1".repeat(40))),
        grpc.status.FAILED_PRECONDITION,
        "running upload-pack: waiting for upload-pack: exit status 128",
      );
    });

    it("passes git_config_options to upload-pack", async () => {
      // The large-file commit is reachable from its branch only; with that branch hidden
      // and any-object wants off, asking for it is refused.
      const hidden = {
        gitConfigOptions: ["uploadpack.hideRefs=refs/heads/large-file", "uploadpack.allowAnySHA1InWant=false"],
      };
      await expect(uploadPack(v0Want(fixture.commits.large))).resolves.toBeDefined();
      await expectStatus(
        uploadPack(v0Want(fixture.commits.large), hidden),
        grpc.status.FAILED_PRECONDITION,
        "running upload-pack: waiting for upload-pack: exit status 128",
      );
    });

    it("rejects bad input before opening the sidechannel", async () => {
      await expectStatus(
        uploadPack("", { relativePath: "doesnt/exist" }),
        grpc.status.NOT_FOUND,
        "repository not found",
      );
      await expectStatus(
        uploadPack("", { gitConfigOptions: ["nonsense"] }),
        grpc.status.INVALID_ARGUMENT,
        'cannot convert invalid config key: "nonsense"',
      );
    });

    it("is Unavailable when the client does not take the sidechannel", async () => {
      // An id the client never registered: it closes the stream instead of saying "ok".
      await expectStatusMatching(
        conn.unary(
          SmartHTTPService.method.postUploadPackWithSidechannel,
          { repository },
          { metadata: { "gitaly-sidechannel-id": "987654" } },
        ),
        grpc.status.UNAVAILABLE,
        /^open sidechannel: sidechannel: receive confirmation: /,
      );
    });

    it("is Internal when the call has no sidechannel at all", async () => {
      await expectStatus(
        client.postUploadPackWithSidechannel({ repository }),
        grpc.status.INTERNAL,
        "open sidechannel: sidechannel: sidechannel-id not found in incoming metadata",
      );
    });

    it("gives up on a client that never finishes its request", async () => {
      const slow = await dialBackchannel(`tcp://${slowNode.address}`);
      try {
        const err = await slow
          .withSidechannel(
            async (sc) => {
              await sc.write(encodePktLine(`want ${fixture.commits.second} ofs-delta\n`));
              // ...and nothing more: no flush, no done.
              return sc.readAll().catch(() => Buffer.alloc(0));
            },
            (metadata) =>
              slow.unary(SmartHTTPService.method.postUploadPackWithSidechannel, { repository }, { metadata }),
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

  describe("PostReceivePack", () => {
    function receivePack(messages: PostReceivePackRequest[]): Promise<Buffer> {
      const call = client.postReceivePack();
      const chunks: Buffer[] = [];
      const done = new Promise<Buffer>((resolve, reject) => {
        call.on("data", (m: { data: Uint8Array }) => chunks.push(Buffer.from(m.data)));
        call.on("end", () => resolve(Buffer.concat(chunks)));
        call.on("error", reject);
      });
      for (const m of messages) call.write(m);
      call.end();
      return done;
    }
    const req = (init: MessageInitShape<typeof PostReceivePackRequestSchema>) =>
      create(PostReceivePackRequestSchema, init);

    it("validates the first message like upstream", async () => {
      await expectStatus(receivePack([req({ repository })]), grpc.status.INVALID_ARGUMENT, "empty GlId");
      await expectStatus(
        receivePack([req({ repository, glId: "user-1", data: Buffer.from("0000") })]),
        grpc.status.INVALID_ARGUMENT,
        "non-empty Data",
      );
      await expectStatus(
        receivePack([req({ repository: { storageName: "fake", relativePath: "path" }, glId: "user-1" })]),
        grpc.status.INVALID_ARGUMENT,
        "storage name not found",
      );
      await expectStatus(receivePack([req({ glId: "user-1" })]), grpc.status.INVALID_ARGUMENT, "repository not set");
      await expectStatus(
        receivePack([req({ repository, glId: "user-1", gitConfigOptions: ["x"] })]),
        grpc.status.INVALID_ARGUMENT,
        'cannot convert invalid config key: "x"',
      );
    });

    it("updates a ref from a hand-written push and reports its status", async () => {
      const target = createStandardRepository(join(node.storage.path, "group/raw-push.git"));
      // Creating a ref to an object the repository has needs no pack... but
      // receive-pack wants one anyway unless only deletions are sent: send an empty one.
      const emptyPack = gitBytes(target.path, ["pack-objects", "--stdout"], Buffer.alloc(0));
      const command = `${"0".repeat(40)} ${target.commits.initial} refs/heads/raw\0report-status\n`;
      const out = await receivePack([
        req({ repository: { storageName: "default", relativePath: "group/raw-push.git" }, glId: "user-1" }),
        req({ data: Buffer.concat([encodePktLine(command), flushPkt]) }),
        req({ data: emptyPack }),
      ]);
      expect(pktStrings(out)).toEqual(["unpack ok\n", "ok refs/heads/raw\n", "0000"]);
      expect(git(target.path, ["rev-parse", "refs/heads/raw"]).trim()).toBe(target.commits.initial);
      expect(node.hookCalls.at(-1)).toEqual({
        relativePath: "group/raw-push.git",
        user: { glId: "user-1", glUsername: "", glRepository: "", protocol: "http" },
      });
    });

    it("fails with FailedPrecondition when receive-pack fails", async () => {
      await expectStatus(
        receivePack([req({ repository, glId: "user-1" }), req({ data: Buffer.from("garbage that is no pkt-line") })]),
        grpc.status.FAILED_PRECONDITION,
        "waiting for receive-pack: exit status 128",
      );
    });
  });
});
