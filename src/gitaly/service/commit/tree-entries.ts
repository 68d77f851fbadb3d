// GetTreeEntries: the entries of a tree at a revision and path, optionally recursive,
// sorted and paginated; non-recursive listings get "flat paths" (the first subtree
// below an entry that is not just a single nested directory).
import { create, toBinary } from "@bufbuild/protobuf";
import {
  type GetTreeEntriesRequest,
  GetTreeEntriesRequest_SortBy,
  type GetTreeEntriesResponse,
  GetTreeEntriesResponseSchema,
  type TreeEntry,
  TreeEntry_EntryType,
  TreeEntrySchema,
} from "../../../gen/commit_pb.js";
import type { PaginationParameter } from "../../../gen/shared_pb.js";
import { PaginationCursorSchema } from "../../../gen/shared_pb.js";
import { internal, invalidArgument, notFound, RpcError } from "../../../shared/grpc/errors.js";
import type { ObjectReader } from "../../git/catfile.js";
import { fromLatin1, joinPath, latin1 } from "../../git/objects/bytes.js";
import { isSafeTreePath, pathRevision, treeEntries, treeObjectEntries } from "../../git/objects/read.js";
import { openRepo, type RepoHandle } from "../../git/objects/repo-handle.js";
import { revisionError, validateRevision } from "../../git/revision.js";
import type { CommitDeps } from "./find-commit.js";
import { decodeToken, encodeToken } from "./page-token.js";
import { asRpcError, MessageChunker } from "./streaming.js";

/** How deep a flat path may reach below its entry. */
const FLAT_PATH_DEPTH = 10;

interface PageToken {
  start: string;
  treeOid: string;
  /** Old tokens held the last entry's object ID, new ones its path. */
  kind: "oid" | "path";
}

function decodePageToken(token: string): PageToken {
  const fields = decodeToken(token, ["file_name", "tree_oid"] as const);
  if (!fields) return { start: token, treeOid: "", kind: "oid" };
  return { start: fields.file_name, treeOid: fields.tree_oid, kind: "path" };
}

function utf8(latin: string): string {
  return fromLatin1(latin).toString("utf8");
}

interface ResolvedTree {
  oid: string;
  data: Uint8Array;
}

/** Reads the tree at `revision:path`, with upstream's errors for what it is not. */
async function resolveTree(
  repo: RepoHandle,
  reader: ObjectReader,
  revision: string,
  path: string,
  ctx: { requestRevision: string; requestPath: string; recursive: boolean },
): Promise<ResolvedTree> {
  const metadata = { path: utf8(ctx.requestPath), revision: utf8(ctx.requestRevision) };
  const usable = revisionError(revision) === null && isSafeTreePath(path);
  const object = usable ? await reader.object(pathRevision(revision, path)) : null;
  if (object) {
    if (object.type !== "tree") throw invalidArgument("path not treeish", metadata);
    return { oid: object.oid, data: object.data };
  }
  // Either nothing by that name, or a name whose object is absent: a submodule commit.
  if (usable && (await resolvesWithoutObject(repo, `${revision}:${path}`))) {
    if (path !== "") throw notFound("revision doesn't exist", metadata);
    throw internal(`check object type: object of ${JSON.stringify(utf8(revision))} is missing`);
  }
  const message = "invalid revision or path";
  // Upstream's codes differ by mode; kept for clients that match on them.
  throw ctx.recursive ? notFound(message, metadata) : invalidArgument(message, metadata);
}

async function resolvesWithoutObject(repo: RepoHandle, revision: string): Promise<boolean> {
  try {
    await repo.run({ subcommand: "rev-parse", flags: ["--verify", "--quiet"], args: [revision] });
    return true;
  } catch {
    return false;
  }
}

/** Every entry below the tree, depth first with trees before their contents (ls-tree -r -t). */
async function recursiveEntries(
  reader: ObjectReader,
  root: ResolvedTree,
  commitOid: string,
  rootPath: string,
): Promise<TreeEntry[]> {
  const oidBytes = root.oid.length / 2;
  const contents = new Map<string, TreeEntry[]>();
  contents.set(root.oid, treeObjectEntries(root.data, oidBytes, commitOid, ""));
  // Read one level at a time so cat-file answers a whole level in one pipelined batch.
  let level = [root.oid];
  while (level.length > 0) {
    const next = new Set<string>();
    for (const oid of level) {
      for (const e of contents.get(oid) ?? []) {
        if (e.type === TreeEntry_EntryType.TREE && !contents.has(e.oid)) next.add(e.oid);
      }
    }
    const oids = [...next];
    const objects = await Promise.all(oids.map((oid) => reader.object(oid)));
    objects.forEach((object, i) => {
      const oid = oids[i] as string;
      if (object?.type !== "tree") throw internal(`listing tree entries: tree ${oid} is missing`);
      contents.set(oid, treeObjectEntries(object.data, oidBytes, commitOid, ""));
    });
    level = oids;
  }

  const out: TreeEntry[] = [];
  const walk = (oid: string, dir: string) => {
    for (const e of contents.get(oid) ?? []) {
      const relative = dir === "" ? latin1(e.path) : `${dir}/${latin1(e.path)}`;
      out.push(create(TreeEntrySchema, { ...e, path: fromLatin1(joinPath(rootPath, relative)) }));
      if (e.type === TreeEntry_EntryType.TREE) walk(e.oid, relative);
    }
  };
  walk(root.oid, "");
  return out;
}

const TYPE_ORDER = new Map([
  [TreeEntry_EntryType.TREE, 1],
  [TreeEntry_EntryType.BLOB, 2],
  [TreeEntry_EntryType.COMMIT, 3],
]);

function sortEntries(entries: TreeEntry[], sort: GetTreeEntriesRequest_SortBy): TreeEntry[] {
  switch (sort) {
    case GetTreeEntriesRequest_SortBy.TREES_FIRST:
      return entries
        .map((e, i) => ({ e, i }))
        .sort((a, b) => (TYPE_ORDER.get(a.e.type) ?? 0) - (TYPE_ORDER.get(b.e.type) ?? 0) || a.i - b.i)
        .map(({ e }) => e);
    case GetTreeEntriesRequest_SortBy.FILESYSTEM:
      return entries
        .map((e, i) => ({ e, i }))
        .sort((a, b) => Buffer.compare(a.e.path, b.e.path) || a.i - b.i)
        .map(({ e }) => e);
    default:
      return entries;
  }
}

function paginate(
  entries: TreeEntry[],
  params: PaginationParameter,
  rootTreeOid: string,
): { entries: TreeEntry[]; cursor: string } {
  const token = decodePageToken(params.pageToken);
  let index = -1;
  if (token.start === "") {
    index = 0;
  } else {
    const found = entries.findIndex((e) => (token.kind === "oid" ? e.oid : latin1(e.path)) === token.start);
    if (found >= 0) index = found + 1;
  }
  if (index < 0) throw internal(`could not find starting OID: ${token.start}`);
  const limit = params.limit;
  if (limit === 0) return { entries: [], cursor: "" };
  if (limit < 0 || index + limit >= entries.length) return { entries: entries.slice(index), cursor: "" };
  const page = entries.slice(index, index + limit);
  const last = page[page.length - 1] as TreeEntry;
  return { entries: page, cursor: encodeToken({ file_name: utf8(latin1(last.path)), tree_oid: rootTreeOid }) };
}

async function flatPath(reader: ObjectReader, revision: string, entry: TreeEntry): Promise<Uint8Array> {
  let flat = latin1(entry.path);
  if (entry.type !== TreeEntry_EntryType.TREE) return entry.path;
  for (let i = 1; i < FLAT_PATH_DEPTH; i++) {
    const sub = await treeEntries(reader, revision, flat);
    const only = sub?.length === 1 ? sub[0] : undefined;
    if (!only || only.type !== TreeEntry_EntryType.TREE) break;
    flat = latin1(only.path);
  }
  return fromLatin1(flat);
}

export async function* getTreeEntries(
  deps: CommitDeps,
  req: GetTreeEntriesRequest,
  signal?: AbortSignal,
): AsyncGenerator<GetTreeEntriesResponse> {
  const repo = openRepo(deps, req.repository, signal);
  validateRevision(req.revision);
  if (req.path.length === 0) throw invalidArgument("empty path");

  const revision = latin1(req.revision);
  let path = latin1(req.path);
  if (path === ".") path = "";
  const commitOid = utf8(revision);
  const params = req.paginationParams;

  // A token pins later pages to the tree of the first one, even if the ref moved since;
  // that tree is then read directly rather than as `revision:path`.
  let treeRevision = revision;
  let treePath = path;
  if (params && params.pageToken !== "") {
    const { treeOid } = decodePageToken(params.pageToken);
    if (treeOid !== "") {
      treeRevision = treeOid;
      treePath = "";
    }
  }

  const reader = await repo.reader();
  let entries: TreeEntry[];
  let rootOid: string;
  try {
    const tree = await resolveTree(repo, reader, treeRevision, treePath, {
      requestRevision: revision,
      requestPath: path,
      recursive: req.recursive,
    });
    rootOid = tree.oid;
    entries = req.recursive
      ? await recursiveEntries(reader, tree, commitOid, path)
      : treeObjectEntries(tree.data, tree.oid.length / 2, commitOid, path);
  } catch (err) {
    throw err instanceof RpcError ? err : asRpcError(err, "reading tree");
  }

  entries = sortEntries(entries, req.sort);
  let cursor = "";
  if (params) ({ entries, cursor } = paginate(entries, params, rootOid));

  if (!req.recursive && !req.skipFlatPaths) {
    const flats = await Promise.all(entries.map((e) => flatPath(reader, revision, e)));
    entries.forEach((e, i) => {
      e.flatPath = flats[i] as Uint8Array;
    });
  }

  const chunker = new MessageChunker<TreeEntry>((e) => toBinary(TreeEntrySchema, e).length);
  // The cursor travels in the first message only.
  let sentCursor = false;
  const message = (batch: TreeEntry[]) => {
    const response = create(GetTreeEntriesResponseSchema, { entries: batch });
    if (!sentCursor) response.paginationCursor = create(PaginationCursorSchema, { nextCursor: cursor });
    sentCursor = true;
    return response;
  };
  for (const entry of entries) {
    const full = chunker.push(entry);
    if (full) yield message(full);
  }
  const rest = chunker.flush();
  if (rest) yield message(rest);
}
