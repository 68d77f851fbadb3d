// BlobService against the fixture repositories, compared with git cat-file: chunking
// at 128 KiB, limits, missing objects, submodules and trees, and back-pressure (a client
// that stops reading stops the server from producing more chunks).
import * as http2 from "node:http2";
import { create, fromBinary, toBinary } from "@bufbuild/protobuf";
import * as grpc from "@grpc/grpc-js";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import {
  type GetBlobRequest,
  GetBlobRequestSchema,
  type GetBlobResponse,
  GetBlobResponseSchema,
} from "../../../src/gen/blob_pb.js";
import { ObjectType } from "../../../src/gen/shared_pb.js";
import { blobService, getBlob } from "../../../src/gitaly/service/blob/blob-service.js";
import { callSignal } from "../../../src/gitaly/service/commit/streaming.js";
import { serverStream } from "../../../src/shared/grpc/handlers.js";
import { waitFor } from "../../../src/shared/net.js";
import { git } from "../../harness/git-fixtures.js";
import { catFile, createReadsFixtures, type ReadsFixtures, revParse, SUBMODULE_COMMIT } from "./reads-fixtures.js";
import { bytes, collect, type ReadsServer, startReadsServer, str } from "./reads-helpers.js";
import { expectStatus } from "./repository-helpers.js";

const CHUNK = 128 * 1024;

let server: ReadsServer;
let fx: ReadsFixtures;
/** GetBlob messages the server's generator has produced, per call, for the back-pressure test. */
const produced: number[] = [];
const STD = () => server.repo("standard.git");

beforeAll(async () => {
  server = await startReadsServer({
    wrap: (deps) => ({
      blob: {
        ...blobService(deps),
        getBlob: serverStream((req: GetBlobRequest, call) => {
          const index = produced.push(0) - 1;
          return (async function* counted(): AsyncGenerator<GetBlobResponse> {
            for await (const msg of getBlob(deps, req, callSignal(call))) {
              produced[index] = (produced[index] ?? 0) + 1;
              yield msg;
            }
          })();
        }),
      },
    }),
  });
  fx = createReadsFixtures(server.storage.path);
});

afterAll(async () => {
  await server?.close();
});

describe("GetBlob", () => {
  it("streams blobs as git cat-file prints them, in 128 KiB chunks", async () => {
    for (const rev of ["main:README.md", "main:assets/blob.bin", "large-file:large.bin"]) {
      const oid = revParse(fx.standard.path, rev);
      const expected = catFile(fx.standard.path, "blob", oid);
      const msgs = await collect(server.blob.getBlob({ repository: STD(), oid, limit: -1n }));
      expect(msgs).toHaveLength(Math.max(1, Math.ceil(expected.length / CHUNK)));
      expect(msgs.every((m) => m.data.length <= CHUNK)).toBe(true);
      expect(msgs[0]).toMatchObject({ oid, size: BigInt(expected.length) });
      expect(msgs.slice(1).every((m) => m.oid === "" && m.size === 0n)).toBe(true);
      expect(Buffer.concat(msgs.map((m) => m.data)).equals(expected)).toBe(true);
    }
  });

  it("honours the limit: 0 sends only the description", async () => {
    const oid = revParse(fx.standard.path, "main:assets/blob.bin");
    const limited = await collect(server.blob.getBlob({ repository: STD(), oid, limit: 10n }));
    expect(Buffer.concat(limited.map((m) => m.data))).toEqual(fx.standard.binaryFile.content.subarray(0, 10));
    expect(limited[0]?.size).toBe(1024n);
    const none = await collect(server.blob.getBlob({ repository: STD(), oid, limit: 0n }));
    expect(none).toHaveLength(1);
    expect(none[0]).toMatchObject({ oid, size: 1024n });
    expect(none[0]?.data.length).toBe(0);
  });

  it("answers one empty message for missing objects, non-blobs and nonsense", async () => {
    for (const oid of [
      "1".repeat(40),
      revParse(fx.standard.path, "main^{tree}"),
      fx.standard.commits.merge,
      "doesnotexist",
      "-x",
      "main:./README.md",
    ]) {
      const msgs = await collect(server.blob.getBlob({ repository: STD(), oid, limit: -1n }));
      expect(msgs, oid).toHaveLength(1);
      expect(msgs[0]).toMatchObject({ oid: "", size: 0n });
    }
    await expectStatus(
      collect(server.blob.getBlob({ repository: STD(), oid: "" })),
      grpc.status.INVALID_ARGUMENT,
      "empty Oid",
    );
    await expectStatus(collect(server.blob.getBlob({ oid: "x" })), grpc.status.INVALID_ARGUMENT, "repository not set");
  });

  it("stops producing while the client does not read", async () => {
    // A raw HTTP/2 client: grpc-js's client keeps reading into its own buffer when its
    // stream is paused, which would hide the server's behaviour.
    const oid = revParse(fx.standard.path, "large-file:large.bin");
    const total = Math.ceil(fx.standard.largeFile.size / CHUNK);
    const before = produced.length;
    const session = http2.connect(`http://${server.address}`);
    try {
      const request = toBinary(
        GetBlobRequestSchema,
        create(GetBlobRequestSchema, { repository: STD(), oid, limit: -1n }),
      );
      const frame = Buffer.alloc(5 + request.length);
      frame.writeUInt32BE(request.length, 1);
      frame.set(request, 5);
      const stream = session.request({
        ":method": "POST",
        ":path": "/gitaly.BlobService/GetBlob",
        "content-type": "application/grpc",
        te: "trailers",
      });
      stream.end(frame);
      stream.pause();
      await waitFor("the call to start", async () => (produced[before] ?? 0) > 0, {
        timeoutMs: 10_000,
        intervalMs: 10,
      });
      // Wait until the server stops producing: flow control and write buffers are full.
      let last = -1;
      await waitFor(
        "production to stall",
        async () => {
          const now = produced[before] ?? 0;
          const stalled = now === last;
          last = now;
          await new Promise((r) => setTimeout(r, 100));
          return stalled;
        },
        { timeoutMs: 20_000, intervalMs: 0 },
      );
      expect(produced[before]).toBeLessThan(total);

      const chunks: Buffer[] = [];
      stream.on("data", (c: Buffer) => chunks.push(c));
      const trailers = new Promise<http2.IncomingHttpHeaders>((resolve) => stream.once("trailers", resolve));
      stream.resume();
      await new Promise((resolve) => stream.once("end", resolve));
      expect((await trailers)["grpc-status"]).toBe("0");
      const body = Buffer.concat(chunks);
      const data: Buffer[] = [];
      for (let pos = 0; pos < body.length; ) {
        const length = body.readUInt32BE(pos + 1);
        data.push(Buffer.from(fromBinary(GetBlobResponseSchema, body.subarray(pos + 5, pos + 5 + length)).data));
        pos += 5 + length;
      }
      expect(data).toHaveLength(total);
      expect(Buffer.concat(data).equals(catFile(fx.standard.path, "blob", oid))).toBe(true);
      expect(produced[before]).toBe(total);
    } finally {
      session.close();
    }
  });
});

describe("GetBlobs", () => {
  it("describes and streams each revision/path like git", async () => {
    const std = fx.standard.path;
    const msgs = await collect(
      server.blob.getBlobs({
        repository: STD(),
        limit: -1n,
        revisionPaths: [
          { revision: "main", path: bytes("README.md") },
          { revision: "large-file", path: bytes("large.bin") },
          { revision: "main", path: bytes("src/") },
          { revision: "main", path: bytes("nope.txt") },
          { revision: "nope", path: bytes("README.md") },
        ],
      }),
    );
    const described = msgs.filter((m) => m.revision !== "");
    expect(described.map((m) => [m.revision, str(m.path)])).toEqual([
      ["main", "README.md"],
      ["large-file", "large.bin"],
      ["main", "src"],
      ["main", "nope.txt"],
      ["nope", "README.md"],
    ]);
    const [readme, large, src, missing, badRev] = described;
    expect(readme).toMatchObject({ oid: revParse(std, "main:README.md"), type: ObjectType.BLOB, mode: 0o100644 });
    expect(Buffer.from(readme?.data ?? [])).toEqual(catFile(std, "blob", "main:README.md"));
    expect(large).toMatchObject({ size: BigInt(fx.standard.largeFile.size), type: ObjectType.BLOB });
    const largeIndex = msgs.indexOf(large as (typeof msgs)[number]);
    const largeData = Buffer.concat(
      msgs.slice(largeIndex, largeIndex + Math.ceil(fx.standard.largeFile.size / CHUNK)).map((m) => m.data),
    );
    expect(largeData.equals(catFile(std, "blob", "large-file:large.bin"))).toBe(true);
    expect(src).toMatchObject({
      oid: revParse(std, "main:src"),
      type: ObjectType.TREE,
      mode: 0o40000,
      size: BigInt(git(std, ["cat-file", "-s", "main:src"]).trim()),
    });
    expect(src?.data.length).toBe(0);
    for (const m of [missing, badRev]) expect(m).toMatchObject({ oid: "", size: 0n, type: ObjectType.UNKNOWN });
  });

  it("marks submodules and applies the limit", async () => {
    const msgs = await collect(
      server.blob.getBlobs({
        repository: server.repo("extra.git"),
        limit: 3n,
        revisionPaths: [
          { revision: "main", path: bytes("sub") },
          { revision: "main", path: bytes("a/b/c/file") },
        ],
      }),
    );
    expect(msgs[0]).toMatchObject({
      isSubmodule: true,
      type: ObjectType.COMMIT,
      oid: SUBMODULE_COMMIT,
      mode: 0o160000,
    });
    expect(msgs[1]).toMatchObject({ type: ObjectType.BLOB, size: 5n, mode: 0o100644 });
    expect(str(msgs[1]?.data)).toBe("dee");
  });

  it("validates like upstream", async () => {
    await expectStatus(
      collect(server.blob.getBlobs({ repository: STD() })),
      grpc.status.INVALID_ARGUMENT,
      "empty RevisionPaths",
    );
    await expectStatus(
      collect(server.blob.getBlobs({ repository: STD(), revisionPaths: [{ revision: "-x", path: bytes("a") }] })),
      grpc.status.INVALID_ARGUMENT,
      "revision can't start with '-'",
    );
  });
});
