// Tag reads: FindTag (one tag by name) and FindAllTags (every tag, sorted, paginated).
// Annotated tags come with their message (trimmed and capped like upstream) and target
// commit; lightweight tags are just a name and a commit.
import { create, toBinary } from "@bufbuild/protobuf";
import {
  type FindAllTagsRequest,
  FindAllTagsRequest_SortBy_Key,
  type FindAllTagsResponse,
  FindAllTagsResponseSchema,
  type FindTagRequest,
  type FindTagResponse,
  FindTagResponseSchema,
} from "../../../gen/ref_pb.js";
import { SortDirection, type Tag, TagSchema } from "../../../gen/shared_pb.js";
import { invalidArgument, notFound, RpcError } from "../../../shared/grpc/errors.js";
import { argText, copyBytes } from "../../git/objects/bytes.js";
import { parseCommit } from "../../git/objects/commit.js";
import { readAnnotatedTag, readCommit } from "../../git/objects/read.js";
import { gitRecords } from "../../git/objects/records.js";
import { openRepo } from "../../git/objects/repo-handle.js";
import { parseTag, trimTagMessage } from "../../git/objects/tag.js";
import { asRpcError, MessageChunker } from "../commit/streaming.js";
import type { RefDeps } from "./branches.js";
import { linePaging } from "./ref-lines.js";

export async function findTag(deps: RefDeps, req: FindTagRequest, signal?: AbortSignal): Promise<FindTagResponse> {
  const repo = openRepo(deps, req.repository, signal);
  if (req.tagName.length === 0) throw invalidArgument("tag name is empty");
  try {
    // `git tag -l` takes the name as a pattern, like upstream; the first match wins.
    const proc = repo.spawn({
      subcommand: "tag",
      flags: ["-l", "--format=%(objectname) %(objecttype) %(refname:lstrip=2)"],
      args: [argText(req.tagName)],
    });
    let first: string | undefined;
    for await (const line of gitRecords(proc)) first ??= line.toString("latin1");
    if (first === undefined) {
      // Upstream adds a FindTagError{tag_not_found} detail; see the report on missing protos.
      throw notFound("tag does not exist");
    }
    const [id = "", type = "", ...rest] = first.split(" ");
    const name = Buffer.from(rest.join(" "), "latin1");
    if (!id || !type || rest.length === 0) throw new Error(`invalid output from for-each-ref command: ${first}`);
    const reader = await repo.reader();
    let tag: Tag;
    if (type === "tag") {
      const annotated = await readAnnotatedTag(reader, id, name);
      if (!annotated) throw new Error(`getting annotated tag: ${id} is not a tag`);
      trimTagMessage(annotated);
      tag = annotated;
    } else {
      tag = create(TagSchema, { id, name: copyBytes(name) });
      if (type === "commit") {
        const commit = await readCommit(reader, id);
        if (!commit) throw new Error(`getting commit catfile: ${id} not found`);
        tag.targetCommit = commit;
      }
    }
    return create(FindTagResponseSchema, { tag });
  } catch (err) {
    throw asRpcError(err, "find tag");
  }
}

const TAG_SORT_KEYS: Record<number, string> = {
  [FindAllTagsRequest_SortBy_Key.REFNAME]: "refname",
  [FindAllTagsRequest_SortBy_Key.CREATORDATE]: "creatordate",
  [FindAllTagsRequest_SortBy_Key.VERSION_REFNAME]: "version:refname",
};

function tagSortField(sortBy: FindAllTagsRequest["sortBy"]): string {
  if (!sortBy) return "";
  let dir: string;
  if (sortBy.direction === SortDirection.ASCENDING) dir = "";
  else if (sortBy.direction === SortDirection.DESCENDING) dir = "-";
  else throw invalidArgument(`unsupported sorting direction: ${sortBy.direction}`);
  const key = TAG_SORT_KEYS[sortBy.key];
  if (key === undefined) throw invalidArgument(`unsupported sorting key: ${sortBy.key}`);
  return dir + key;
}

const TAG_FORMAT = "%(objectname) %(refname)%(if)%(*objectname)%(then)\n%(objectname)^{} PEELED%(end)";

export async function* findAllTags(
  deps: RefDeps,
  req: FindAllTagsRequest,
  signal?: AbortSignal,
): AsyncGenerator<FindAllTagsResponse> {
  const repo = openRepo(deps, req.repository, signal);
  const sort = tagSortField(req.sortBy);
  const paging = linePaging(req.paginationParams);
  const reader = await repo.reader();

  const flags = [`--format=${TAG_FORMAT}`];
  if (sort) flags.push(`--sort=${sort}`);
  const proc = repo.spawn({ subcommand: "for-each-ref", flags, args: ["refs/tags/"] });
  const lines = gitRecords(proc)[Symbol.asyncIterator]();
  const chunker = new MessageChunker<Tag>((t) => toBinary(TagSchema, t).length);
  let pastToken = paging.isPageToken(Buffer.alloc(0));
  let sent = 0;
  try {
    for (;;) {
      const next = await lines.next();
      if (next.done) break;
      if (sent >= paging.limit) break;
      const line = next.value.toString("latin1");
      const sp = line.indexOf(" ");
      const oid = line.slice(0, sp);
      const refname = Buffer.from(line.slice(sp + 1), "latin1");

      const object = await reader.object(oid);
      if (!object) throw new Error(`tag object ${oid} of ${refname.toString("utf8")} is missing`);
      let tag: Tag;
      if (object.type === "tag") {
        tag = parseTag(object.oid, object.data).tag;
        trimTagMessage(tag);
        // The peeled line that for-each-ref prints right after an annotated tag.
        const peeled = await lines.next();
        if (peeled.done) throw new Error("expected peeled tag");
        const target = await reader.object(`${oid}^{}`);
        if (target?.type === "commit") tag.targetCommit = parseCommit(target.oid, target.data);
      } else if (object.type === "commit") {
        tag = create(TagSchema, { id: object.oid, targetCommit: parseCommit(object.oid, object.data) });
      } else {
        tag = create(TagSchema, { id: object.oid });
      }
      // The ref's name wins over the name inside the tag object.
      const short = refname.subarray("refs/tags/".length);
      if (short.length > 0) tag.name = copyBytes(short);

      if (!pastToken) {
        pastToken = paging.isPageToken(refname);
        continue;
      }
      const full = chunker.push(tag);
      if (full) yield create(FindAllTagsResponseSchema, { tags: full });
      sent++;
    }
  } catch (err) {
    throw err instanceof RpcError ? err : asRpcError(err, "iterating over tags");
  } finally {
    await lines.return?.(undefined);
  }
  if (!pastToken) throw invalidArgument("could not find page token");
  const rest = chunker.flush();
  if (rest) yield create(FindAllTagsResponseSchema, { tags: rest });
}
