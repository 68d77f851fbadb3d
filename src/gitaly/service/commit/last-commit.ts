// LastCommitForPath: the newest commit reachable from a revision that touched a path
// (`git log -1 -- <path>`), read through cat-file.
import { create } from "@bufbuild/protobuf";
import {
  type LastCommitForPathRequest,
  type LastCommitForPathResponse,
  LastCommitForPathResponseSchema,
} from "../../../gen/commit_pb.js";
import { invalidArgument } from "../../../shared/grpc/errors.js";
import { GitCommandError } from "../../git/command.js";
import { argText, cleanPath } from "../../git/objects/bytes.js";
import { readCommit } from "../../git/objects/read.js";
import { openRepo } from "../../git/objects/repo-handle.js";
import { validateRevision } from "../../git/revision.js";
import type { CommitDeps } from "./find-commit.js";
import { globalFlags } from "./list-commits.js";
import { asRpcError } from "./streaming.js";

const BAD_REVISION = /^fatal: bad revision '.*'\n$/s;

export async function lastCommitForPath(
  deps: CommitDeps,
  req: LastCommitForPathRequest,
  signal?: AbortSignal,
): Promise<LastCommitForPathResponse> {
  const repo = openRepo(deps, req.repository, signal);
  validateRevision(req.revision);
  let path = argText(req.path);
  if (path === "" || path === "/") {
    path = ".";
  } else if (path.startsWith("/")) {
    throw invalidArgument("path is an absolute path", { path });
  } else {
    const clean = cleanPath(path);
    if (clean === ".." || clean.startsWith("../")) throw invalidArgument("path escapes repository", { path });
  }
  // The legacy literal_pathspec flag predates GlobalOptions and means the same.
  const literal = req.literalPathspec || req.globalOptions?.literalPathspecs === true;

  let stdout: Buffer;
  try {
    ({ stdout } = await repo.run({
      subcommand: "log",
      globalFlags: globalFlags({ literalPathspecs: literal }),
      flags: ["--format=%H", "--max-count=1"],
      args: [argText(req.revision)],
      postSeparatorArgs: [path],
    }));
  } catch (err) {
    if (err instanceof GitCommandError && BAD_REVISION.test(err.stderr)) return create(LastCommitForPathResponseSchema);
    throw asRpcError(err, "logging last commit for path");
  }
  const out = stdout.toString("latin1");
  if (out === "") return create(LastCommitForPathResponseSchema);
  const nl = out.indexOf("\n");
  if (nl < 0) throw asRpcError(new Error("expected object ID terminated by newline"), "logging last commit for path");
  if (nl !== out.length - 1) throw asRpcError(new Error("object ID has trailing data"), "logging last commit for path");

  try {
    const commit = await readCommit(await repo.reader(), out.slice(0, nl));
    return commit ? create(LastCommitForPathResponseSchema, { commit }) : create(LastCommitForPathResponseSchema);
  } catch (err) {
    throw asRpcError(err, "reading commit");
  }
}
