// Typed reads through a cached cat-file reader: commits (peeled), annotated tags with
// their target commit, and tree listings addressed by revision and path.
import { create } from "@bufbuild/protobuf";
import { type TreeEntry, TreeEntrySchema } from "../../../gen/commit_pb.js";
import type { GitCommit, Tag } from "../../../gen/shared_pb.js";
import type { ObjectReader } from "../catfile.js";
import { cleanPath, dirPath, fromLatin1, joinPath } from "./bytes.js";
import { parseCommit } from "./commit.js";
import { parseTag } from "./tag.js";
import { entryTypeOfMode, parseMode, parseTree } from "./tree.js";

function revisionBytes(revision: string | Uint8Array, suffix = ""): Buffer {
  const base = typeof revision === "string" ? fromLatin1(revision) : Buffer.from(revision);
  return suffix ? Buffer.concat([base, Buffer.from(suffix, "latin1")]) : base;
}

/** The commit `revision` peels to, or null if there is none (missing, or not commit-ish). */
export async function readCommit(reader: ObjectReader, revision: string | Uint8Array): Promise<GitCommit | null> {
  const object = await reader.object(revisionBytes(revision, "^{commit}"));
  if (object?.type !== "commit") return null;
  return parseCommit(object.oid, object.data);
}

/**
 * The annotated tag `tagOid` named `name`, with its target commit when the tag (possibly
 * through further tags) points at one. Null if `tagOid` is not a tag object.
 */
export async function readAnnotatedTag(reader: ObjectReader, tagOid: string, name: Uint8Array): Promise<Tag | null> {
  const object = await reader.object(revisionBytes(tagOid));
  if (object?.type !== "tag") return null;
  const { tag, taggedOid, taggedType } = parseTag(object.oid, object.data, name);
  if (taggedType === "commit") {
    const commit = await readCommit(reader, taggedOid);
    if (!commit) throw new Error(`tag ${tagOid} points at missing commit ${taggedOid}`);
    tag.targetCommit = commit;
  } else if (taggedType === "tag") {
    const peeled = await reader.object(revisionBytes(taggedOid, "^{}"));
    if (peeled?.type === "commit") tag.targetCommit = parseCommit(peeled.oid, peeled.data);
  }
  return tag;
}

/**
 * Whether `<revision>:<path>` may be sent to cat-file. A path starting with "./" or
 * "../" is relative to a working tree, which a bare repository lacks: cat-file then
 * dies instead of answering "missing", taking every pipelined request with it.
 */
export function isSafeTreePath(path: string): boolean {
  return !(path.startsWith("./") || path.startsWith("../"));
}

/** `<revision>:<path>` as bytes. */
export function pathRevision(revision: string, path: string): Buffer {
  return fromLatin1(`${revision}:${path}`);
}

/**
 * The entries of the tree at `revision:path` (latin1 strings), each with its full path
 * and `commitOid` (default: the revision as given). Null if that does not name a tree
 * (missing revision or path, or a blob).
 */
export async function treeEntries(
  reader: ObjectReader,
  revision: string,
  path: string,
  commitOid: string = revision,
): Promise<TreeEntry[] | null> {
  const dir = path === "." ? "" : path;
  if (cleanPath(dir).startsWith("../") || !isSafeTreePath(dir)) return null;
  const object = await reader.object(pathRevision(revision, dir));
  if (object?.type !== "tree") return null;
  return treeObjectEntries(object.data, object.oid.length / 2, commitOid, dir);
}

/** The entries of a tree object's content, with paths under `root`. */
export function treeObjectEntries(data: Uint8Array, oidBytes: number, commitOid: string, root: string): TreeEntry[] {
  return parseTree(data, oidBytes).map((raw) => {
    const mode = parseMode(raw.mode);
    return create(TreeEntrySchema, {
      oid: raw.oid,
      path: fromLatin1(joinPath(root, raw.name.toString("latin1"))),
      type: entryTypeOfMode(mode),
      mode,
      commitOid,
    });
  });
}

/**
 * Looks up single paths, reading each parent tree once (GetBlobs often asks for many
 * files of one directory).
 */
export class TreeEntryFinder {
  private readonly cache = new Map<string, TreeEntry[] | null>();

  constructor(private readonly reader: ObjectReader) {}

  /** The entry at `path` (latin1) in `revision`, or null. */
  async find(revision: string, path: string): Promise<TreeEntry | null> {
    const dir = dirPath(path);
    const key = JSON.stringify([revision, dir]);
    let entries = this.cache.get(key);
    if (entries === undefined) {
      entries = await treeEntries(this.reader, revision, dir);
      this.cache.set(key, entries);
    }
    const wanted = fromLatin1(path);
    return entries?.find((e) => wanted.equals(e.path)) ?? null;
  }
}
