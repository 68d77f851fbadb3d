// CountCommits (`git rev-list --count`) and CommitIsAncestor (`git merge-base
// --is-ancestor`). Like upstream, git's failures (unknown revisions) are answers, not
// errors: a count of 0, or "not an ancestor".
import { create } from "@bufbuild/protobuf";
import {
  type CommitIsAncestorRequest,
  type CommitIsAncestorResponse,
  CommitIsAncestorResponseSchema,
  type CountCommitsRequest,
  type CountCommitsResponse,
  CountCommitsResponseSchema,
} from "../../../gen/commit_pb.js";
import { internal, invalidArgument } from "../../../shared/grpc/errors.js";
import type { Logger } from "../../../shared/logging.js";
import { argText } from "../../git/objects/bytes.js";
import { openRepo } from "../../git/objects/repo-handle.js";
import { validateRevision } from "../../git/revision.js";
import type { CommitDeps } from "./find-commit.js";
import { gitDate, globalFlags, validatePseudoRevisions } from "./list-commits.js";

type LoggingDeps = CommitDeps & { logger?: Logger };

export async function countCommits(
  deps: LoggingDeps,
  req: CountCommitsRequest,
  signal?: AbortSignal,
): Promise<CountCommitsResponse> {
  const repo = openRepo(deps, req.repository, signal);
  const flags = ["--count"];
  let args: string[] = [];
  if (req.revisions.length > 0) {
    validatePseudoRevisions(req.revisions);
    args = req.revisions.map((r) => argText(r));
  } else {
    // The deprecated single revision, or `all`.
    validateRevision(req.revision, { allowEmpty: true });
    if (req.revision.length === 0 && !req.all) throw invalidArgument("empty Revision and false All");
    if (req.all) flags.push("--all");
    else args = [argText(req.revision)];
  }
  if (req.before) flags.push(`--before=${gitDate(req.before)}`);
  if (req.after) flags.push(`--after=${gitDate(req.after)}`);
  if (req.maxCount !== 0) flags.push(`--max-count=${req.maxCount}`);
  if (req.firstParent) flags.push("--first-parent");

  let stdout: Buffer;
  try {
    ({ stdout } = await repo.run({
      subcommand: "rev-list",
      globalFlags: globalFlags(req.globalOptions),
      flags,
      args,
      postSeparatorArgs: req.path.length > 0 ? [argText(req.path)] : [],
    }));
  } catch (err) {
    deps.logger?.info({ err }, "ignoring git rev-list error");
    return create(CountCommitsResponseSchema, { count: 0 });
  }
  const text = stdout.toString("latin1").trim();
  if (!/^\d+$/.test(text)) throw internal(`parse count: unexpected output ${JSON.stringify(text)}`);
  return create(CountCommitsResponseSchema, { count: Number(text) | 0 });
}

export async function commitIsAncestor(
  deps: CommitDeps,
  req: CommitIsAncestorRequest,
  signal?: AbortSignal,
): Promise<CommitIsAncestorResponse> {
  const repo = openRepo(deps, req.repository, signal);
  if (req.ancestorId === "") throw invalidArgument("empty ancestor sha");
  if (req.childId === "") throw invalidArgument("empty child sha");
  try {
    await repo.run({ subcommand: "merge-base", flags: ["--is-ancestor"], args: [req.ancestorId, req.childId] });
    return create(CommitIsAncestorResponseSchema, { value: true });
  } catch {
    return create(CommitIsAncestorResponseSchema, { value: false });
  }
}
