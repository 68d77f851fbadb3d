// TreeEntry: the object at a revision and path; blob contents are streamed in 128 KiB
// chunks, trees and submodules are described without data.
import { create } from "@bufbuild/protobuf";
import {
  TreeEntry_EntryType,
  type TreeEntryRequest,
  type TreeEntryResponse,
  TreeEntryResponse_ObjectType,
  TreeEntryResponseSchema,
} from "../../../gen/commit_pb.js";
import { failedPrecondition, internal, invalidArgument, notFound } from "../../../shared/grpc/errors.js";
import { latin1 } from "../../git/objects/bytes.js";
import { TreeEntryFinder } from "../../git/objects/read.js";
import { openRepo } from "../../git/objects/repo-handle.js";
import { validateRevision } from "../../git/revision.js";
import type { CommitDeps } from "./find-commit.js";
import { asRpcError, byteChunks } from "./streaming.js";

export async function* treeEntry(
  deps: CommitDeps,
  req: TreeEntryRequest,
  signal?: AbortSignal,
): AsyncGenerator<TreeEntryResponse> {
  const repo = openRepo(deps, req.repository, signal);
  validateRevision(req.revision);
  if (req.path.length === 0) throw invalidArgument("empty Path");
  if (req.limit < 0n) throw invalidArgument("negative Limit");
  if (req.maxSize < 0n) throw invalidArgument("negative MaxSize");

  let path = latin1(req.path);
  // The parent of "api/docs/" must be "api", not "api/docs".
  if (path.length > 1) path = path.replace(/\/+$/, "");
  const revision = latin1(req.revision);

  const reader = await repo.reader();
  const entry = await new TreeEntryFinder(reader).find(revision, path).catch((err: unknown) => {
    throw asRpcError(err, "finding tree entry");
  });
  if (!entry || entry.oid === "") {
    throw notFound("tree entry not found", { path: Buffer.from(path, "latin1").toString("utf8") });
  }

  if (entry.type === TreeEntry_EntryType.COMMIT) {
    yield create(TreeEntryResponseSchema, {
      type: TreeEntryResponse_ObjectType.COMMIT,
      mode: entry.mode,
      oid: entry.oid,
    });
    return;
  }

  const info = await reader.info(entry.oid);
  if (!info) throw internal(`object ${entry.oid} of tree entry ${JSON.stringify(path)} is missing`);
  if (entry.type === TreeEntry_EntryType.TREE) {
    yield create(TreeEntryResponseSchema, {
      type: TreeEntryResponse_ObjectType.TREE,
      oid: entry.oid,
      size: BigInt(info.size),
      mode: entry.mode,
    });
    return;
  }

  if (info.type !== "blob") {
    throw internal(
      `mismatched object type: tree-oid=${entry.oid} object-oid=${info.oid} entry-type=BLOB object-type=${info.type}`,
    );
  }
  if (req.maxSize > 0n && BigInt(info.size) > req.maxSize) {
    throw failedPrecondition(
      `object size (${info.size}) is bigger than the maximum allowed size (${req.maxSize.toString()})`,
    );
  }
  const length = req.limit > 0n && BigInt(info.size) > req.limit ? Number(req.limit) : info.size;
  const first = {
    type: TreeEntryResponse_ObjectType.BLOB,
    oid: info.oid,
    size: BigInt(info.size),
    mode: entry.mode,
  };
  if (length === 0) {
    yield create(TreeEntryResponseSchema, first);
    return;
  }
  const blob = await reader.object(info.oid);
  if (!blob) throw internal(`blob ${info.oid} disappeared while reading it`);
  let isFirst = true;
  for (const data of byteChunks(blob.data, length)) {
    // Only the first message describes the entry; the rest carry data alone.
    yield create(TreeEntryResponseSchema, isFirst ? { ...first, data } : { data });
    isFirst = false;
  }
}
