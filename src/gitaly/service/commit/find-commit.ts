// FindCommit and the trailer lookup it shares with other commit readers.
import { create } from "@bufbuild/protobuf";
import { type FindCommitRequest, type FindCommitResponse, FindCommitResponseSchema } from "../../../gen/commit_pb.js";
import type { GitCommit } from "../../../gen/shared_pb.js";
import { readCommit } from "../../git/objects/read.js";
import { gitRecords } from "../../git/objects/records.js";
import { openRepo, type RepoHandle } from "../../git/objects/repo-handle.js";
import { parseTrailers } from "../../git/objects/trailers.js";
import { validateRevision } from "../../git/revision.js";
import type { NodeDeps } from "../deps.js";
import { asRpcError } from "./streaming.js";

export type CommitDeps = Pick<NodeDeps, "locator" | "git" | "catfile">;

/** Adds the commit's trailers, as `git show` unfolds them. */
export async function addTrailers(repo: RepoHandle, commit: GitCommit): Promise<void> {
  const proc = repo.spawn({
    subcommand: "show",
    flags: ["--format=%(trailers:unfold,separator=%x00)", "--no-patch"],
    args: [commit.id],
  });
  const lines: Buffer[] = [];
  for await (const line of gitRecords(proc)) lines.push(line);
  if (lines.length > 1) {
    throw new Error(`git show produced more than one line of output, the second line is: ${lines[1]?.toString()}`);
  }
  const line = lines[0];
  if (line && line.length > 0) commit.trailers = parseTrailers(line);
}

export async function findCommit(
  deps: CommitDeps,
  req: FindCommitRequest,
  signal?: AbortSignal,
): Promise<FindCommitResponse> {
  const repo = openRepo(deps, req.repository, signal);
  validateRevision(req.revision);
  try {
    const commit = await readCommit(await repo.reader(), req.revision);
    // A revision that names no commit is not an error: the client checks `commit`.
    if (!commit) return create(FindCommitResponseSchema);
    if (req.trailers) await addTrailers(repo, commit);
    return create(FindCommitResponseSchema, { commit });
  } catch (err) {
    throw asRpcError(err, "find commit");
  }
}
