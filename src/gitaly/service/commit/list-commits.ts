// ListCommits: `git rev-list` over the requested revisions (pseudo revisions such as
// --all and --not included), each commit read through cat-file, in messages of up to
// 1 MiB. Pagination: page_token is the last commit of the previous page; a cursor is
// only sent when more commits exist.
import { create, toBinary } from "@bufbuild/protobuf";
import type { Timestamp } from "@bufbuild/protobuf/wkt";
import {
  type ListCommitsRequest,
  ListCommitsRequest_Order,
  type ListCommitsResponse,
  ListCommitsResponseSchema,
} from "../../../gen/commit_pb.js";
import { type GitCommit, GitCommitSchema, PaginationCursorSchema } from "../../../gen/shared_pb.js";
import { internal, invalidArgument } from "../../../shared/grpc/errors.js";
import { argText } from "../../git/objects/bytes.js";
import { parseCommit } from "../../git/objects/commit.js";
import { gitRecords } from "../../git/objects/records.js";
import { openRepo } from "../../git/objects/repo-handle.js";
import { revisionError } from "../../git/revision.js";
import type { CommitDeps } from "./find-commit.js";
import { asRpcError, MessageChunker } from "./streaming.js";

/** How git reads a protobuf timestamp in --before/--after: "YYYY-MM-DD HH:MM:SS +0000". */
export function gitDate(ts: Timestamp): string {
  const iso = new Date(Number(ts.seconds) * 1000).toISOString();
  return `${iso.slice(0, 10)} ${iso.slice(11, 19)} +0000`;
}

/** The literal-pathspecs switch of GlobalOptions, as a global git flag. */
export function globalFlags(options: { literalPathspecs: boolean } | undefined): string[] {
  return options?.literalPathspecs ? ["--literal-pathspecs"] : [];
}

/** Validates revisions that may include pseudo revisions; upstream's message and metadata. */
export function validatePseudoRevisions(revisions: readonly (string | Uint8Array)[]): void {
  for (const revision of revisions) {
    const reason = revisionError(revision, { allowPseudoRevisions: true });
    if (reason !== null) {
      const text = typeof revision === "string" ? revision : Buffer.from(revision).toString("utf8");
      throw invalidArgument(`invalid revision: ${reason}`, { revision: text });
    }
  }
}

function revListFlags(req: ListCommitsRequest): string[] {
  const flags: string[] = [];
  if (req.order === ListCommitsRequest_Order.TOPO) flags.push("--topo-order");
  if (req.order === ListCommitsRequest_Order.DATE) flags.push("--date-order");
  if (req.reverse) flags.push("--reverse");
  if (req.maxParents > 0) flags.push(`--max-parents=${req.maxParents}`);
  if (req.disableWalk) flags.push("--no-walk");
  if (req.firstParent) flags.push("--first-parent");
  if (req.before) flags.push(`--before=${gitDate(req.before)}`);
  if (req.after) flags.push(`--after=${gitDate(req.after)}`);
  if (req.author.length > 0) flags.push(`--author=${argText(req.author)}`);
  if (req.ignoreCase) flags.push("--regexp-ignore-case");
  for (const pattern of req.commitMessagePatterns) flags.push(`--grep=${argText(pattern)}`);
  if (req.skip > 0) flags.push(`--skip=${req.skip}`);
  return flags;
}

export async function* listCommits(
  deps: CommitDeps,
  req: ListCommitsRequest,
  signal?: AbortSignal,
): AsyncGenerator<ListCommitsResponse> {
  const repo = openRepo(deps, req.repository, signal);
  if (req.revisions.length === 0) throw invalidArgument("missing revisions");
  validatePseudoRevisions(req.revisions);

  const reader = await repo.reader();
  // Revisions go on the command line: git < 2.42 refuses pseudo revisions on --stdin.
  const proc = repo.spawn({
    subcommand: "rev-list",
    globalFlags: globalFlags(req.globalOptions),
    flags: revListFlags(req),
    args: [...req.revisions],
    postSeparatorArgs: req.paths.map((p) => argText(p)),
  });

  const token = req.paginationParams?.pageToken ?? "";
  const limit = req.paginationParams?.limit ?? 0;
  let tokenSeen = token === "";
  let count = 0;
  let lastId = "";
  let hasMore = false;
  const chunker = new MessageChunker<GitCommit>((c) => toBinary(GitCommitSchema, c).length);
  try {
    for await (const line of gitRecords(proc)) {
      const oid = line.toString("latin1").split(" ", 1)[0] as string;
      if (!tokenSeen) {
        // The token itself was the last commit of the previous page.
        tokenSeen = oid === token;
        continue;
      }
      if (limit > 0 && count >= limit) {
        hasMore = true;
        break;
      }
      const object = await reader.object(oid);
      if (object?.type !== "commit") throw internal(`parsing commit: ${oid} is not a commit`);
      const commit = parseCommit(object.oid, object.data);
      lastId = commit.id;
      count++;
      const full = chunker.push(commit);
      if (full) yield create(ListCommitsResponseSchema, { commits: full });
    }
  } catch (err) {
    throw asRpcError(err, "iterating objects");
  }
  const rest = chunker.flush();
  if (rest || hasMore) {
    const response = create(ListCommitsResponseSchema, { commits: rest ?? [] });
    if (hasMore && lastId !== "") response.paginationCursor = create(PaginationCursorSchema, { nextCursor: lastId });
    yield response;
  }
}
