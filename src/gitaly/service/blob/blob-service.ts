// gitaly.BlobService: blob contents by object ID (GetBlob) or by revision and path
// (GetBlobs), read through the cached cat-file process and streamed in 128 KiB chunks.
import { create } from "@bufbuild/protobuf";
import {
  type BlobService,
  type GetBlobRequest,
  type GetBlobResponse,
  GetBlobResponseSchema,
  type GetBlobsRequest,
  type GetBlobsResponse,
  GetBlobsResponseSchema,
} from "../../../gen/blob_pb.js";
import { TreeEntry_EntryType } from "../../../gen/commit_pb.js";
import { ObjectType } from "../../../gen/shared_pb.js";
import { internal, invalidArgument } from "../../../shared/grpc/errors.js";
import { serverStream } from "../../../shared/grpc/handlers.js";
import type { ServiceImplementation } from "../../../shared/grpc/service.js";
import type { ObjectReader } from "../../git/catfile.js";
import { copyBytes, latin1 } from "../../git/objects/bytes.js";
import { isSafeTreePath, TreeEntryFinder } from "../../git/objects/read.js";
import { openRepo } from "../../git/objects/repo-handle.js";
import { revisionError, validateRevision } from "../../git/revision.js";
import { asRpcError, byteChunks, callSignal } from "../commit/streaming.js";
import type { NodeDeps } from "../deps.js";

type BlobDeps = Pick<NodeDeps, "locator" | "git" | "catfile">;

/**
 * Whether cat-file may be asked for `revision` at all. Upstream hands GetBlob's oid to
 * cat-file unchecked and gets "missing" for nonsense; our reader refuses some of that
 * up front and cat-file dies on working-tree-relative paths, so those are answered
 * as missing here.
 */
function isReadableRevision(revision: string): boolean {
  if (revisionError(revision, { allowPathScopedRevisions: true }) !== null) return false;
  const colon = revision.indexOf(":");
  return colon < 0 || isSafeTreePath(revision.slice(colon + 1));
}

export async function* getBlob(
  deps: BlobDeps,
  req: GetBlobRequest,
  signal?: AbortSignal,
): AsyncGenerator<GetBlobResponse> {
  const repo = openRepo(deps, req.repository, signal);
  if (req.oid.length === 0) throw invalidArgument("empty Oid");
  const reader = await repo.reader();

  const blob = isReadableRevision(req.oid)
    ? await reader.object(req.oid).catch((err: unknown) => {
        throw asRpcError(err, "read object");
      })
    : null;
  if (blob?.type !== "blob") {
    yield create(GetBlobResponseSchema);
    return;
  }

  const limit = req.limit >= 0n && req.limit < BigInt(blob.size) ? Number(req.limit) : blob.size;
  const first = { size: BigInt(blob.size), oid: blob.oid };
  if (limit === 0) {
    yield create(GetBlobResponseSchema, first);
    return;
  }
  let isFirst = true;
  for (const data of byteChunks(blob.data, limit)) {
    yield create(GetBlobResponseSchema, isFirst ? { ...first, data } : { data });
    isFirst = false;
  }
}

const OBJECT_TYPE_OF_ENTRY = new Map<TreeEntry_EntryType, ObjectType>([
  [TreeEntry_EntryType.BLOB, ObjectType.BLOB],
  [TreeEntry_EntryType.TREE, ObjectType.TREE],
  [TreeEntry_EntryType.COMMIT, ObjectType.COMMIT],
]);

export async function* getBlobs(
  deps: BlobDeps,
  req: GetBlobsRequest,
  signal?: AbortSignal,
): AsyncGenerator<GetBlobsResponse> {
  const repo = openRepo(deps, req.repository, signal);
  if (req.revisionPaths.length === 0) throw invalidArgument("empty RevisionPaths");
  for (const rp of req.revisionPaths) validateRevision(rp.revision);

  const reader = await repo.reader();
  const finder = new TreeEntryFinder(reader);
  for (const rp of req.revisionPaths) {
    let path = latin1(rp.path);
    if (path.length > 1) path = path.replace(/\/+$/, "");
    const revision = latin1(Buffer.from(rp.revision, "utf8"));
    const base = { revision: rp.revision, path: copyBytes(Buffer.from(path, "latin1")) };

    const entry = await finder.find(revision, path).catch((err: unknown) => {
      throw asRpcError(err, "find by revision and path");
    });
    if (!entry || entry.oid === "") {
      yield create(GetBlobsResponseSchema, base);
      continue;
    }
    const located = { ...base, mode: entry.mode, oid: entry.oid };
    if (entry.type === TreeEntry_EntryType.COMMIT) {
      yield create(GetBlobsResponseSchema, { ...located, isSubmodule: true, type: ObjectType.COMMIT });
      continue;
    }
    const info = await reader.info(entry.oid);
    if (!info) throw internal(`read object info: object ${entry.oid} at ${JSON.stringify(path)} is missing`);
    const type = OBJECT_TYPE_OF_ENTRY.get(entry.type);
    if (type === undefined) continue;
    const described = { ...located, size: BigInt(info.size), type };
    if (type !== ObjectType.BLOB) {
      yield create(GetBlobsResponseSchema, described);
      continue;
    }
    yield* blobChunks(reader, described, req.limit);
  }
}

async function* blobChunks(
  reader: ObjectReader,
  described: { oid: string; size: bigint } & Record<string, unknown>,
  limit: bigint,
): AsyncGenerator<GetBlobsResponse> {
  const readLimit = limit < 0n || limit > described.size ? described.size : limit;
  if (readLimit === 0n) {
    yield create(GetBlobsResponseSchema, described);
    return;
  }
  const blob = await reader.object(described.oid);
  if (!blob) throw internal(`read object: blob ${described.oid} is missing`);
  if (blob.type !== "blob") throw internal(`blob got unexpected type "${blob.type}"`);
  let isFirst = true;
  for (const data of byteChunks(blob.data, Number(readLimit))) {
    yield create(GetBlobsResponseSchema, isFirst ? { ...described, data } : { data });
    isFirst = false;
  }
}

export function blobService(deps: NodeDeps): ServiceImplementation<(typeof BlobService)["method"]> {
  return {
    getBlob: serverStream((req, call) => getBlob(deps, req, callSignal(call))),
    getBlobs: serverStream((req, call) => getBlobs(deps, req, callSignal(call))),
  };
}
