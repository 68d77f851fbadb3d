// Branch reads: the default branch, single branches, branch listings, ref existence.
import { create } from "@bufbuild/protobuf";
import {
  type FindAllBranchesRequest,
  type FindAllBranchesResponse,
  FindAllBranchesResponse_BranchSchema,
  FindAllBranchesResponseSchema,
  type FindBranchRequest,
  type FindBranchResponse,
  FindBranchResponseSchema,
  type FindDefaultBranchNameRequest,
  type FindDefaultBranchNameResponse,
  FindDefaultBranchNameResponseSchema,
  type FindLocalBranchesRequest,
  FindLocalBranchesRequest_SortBy,
  type FindLocalBranchesResponse,
  FindLocalBranchesResponseSchema,
  type RefExistsRequest,
  type RefExistsResponse,
  RefExistsResponseSchema,
} from "../../../gen/ref_pb.js";
import { BranchSchema, type GitCommit } from "../../../gen/shared_pb.js";
import { internal, invalidArgument, RpcError } from "../../../shared/grpc/errors.js";
import type { ObjectReader } from "../../git/catfile.js";
import { GitCommandError } from "../../git/command.js";
import { argText, copyBytes, latin1 } from "../../git/objects/bytes.js";
import { readCommit } from "../../git/objects/read.js";
import { gitRecords } from "../../git/objects/records.js";
import { openRepo, type RepoHandle } from "../../git/objects/repo-handle.js";
import { asRpcError } from "../commit/streaming.js";
import type { NodeDeps } from "../deps.js";
import { forEachRefLines, type LineBatch, linePaging, pagedLines } from "./ref-lines.js";

export type RefDeps = Pick<NodeDeps, "locator" | "git" | "catfile">;

const DEFAULT_REF = "refs/heads/main";
const LEGACY_DEFAULT_REF = "refs/heads/master";
const BRANCH_FORMAT = "%(refname)%00%(objectname)";

/** The target of HEAD, e.g. "refs/heads/main" (also when that branch is unborn). */
export async function headReference(repo: RepoHandle): Promise<string> {
  const { stdout } = await repo.run({ subcommand: "symbolic-ref", args: ["HEAD"] });
  const text = stdout.toString("latin1");
  const nl = text.indexOf("\n");
  if (nl < 0) throw new Error("expected symbolic reference to be terminated by newline");
  if (nl !== text.length - 1) throw new Error("symbolic reference has trailing data");
  return text.slice(0, nl);
}

/**
 * What GitLab calls the default branch: HEAD's target if it exists, else main, else
 * master, else the first branch; "" in a repository without branches.
 */
export async function defaultBranch(repo: RepoHandle, reader: ObjectReader): Promise<string> {
  const head = await headReference(repo);
  for (const candidate of [head, DEFAULT_REF, LEGACY_DEFAULT_REF]) {
    if (await reader.info(Buffer.from(candidate, "latin1"))) return candidate;
  }
  const { stdout } = await repo.run({
    subcommand: "for-each-ref",
    flags: ["--count=1", "--format=%(refname)"],
    args: ["refs/heads/"],
  });
  return stdout.toString("latin1").trim();
}

export async function findDefaultBranchName(
  deps: RefDeps,
  req: FindDefaultBranchNameRequest,
  signal?: AbortSignal,
): Promise<FindDefaultBranchNameResponse> {
  const repo = openRepo(deps, req.repository, signal);
  if (req.headOnly) {
    const head = await headReference(repo).catch((err: unknown) => {
      throw asRpcError(err, "head reference");
    });
    return create(FindDefaultBranchNameResponseSchema, { name: Buffer.from(head, "latin1") });
  }
  const name = await defaultBranch(repo, await repo.reader()).catch((err: unknown) => {
    throw asRpcError(err, "get default branch");
  });
  return create(FindDefaultBranchNameResponseSchema, { name: Buffer.from(name, "latin1") });
}

export async function refExists(
  deps: RefDeps,
  req: RefExistsRequest,
  signal?: AbortSignal,
): Promise<RefExistsResponse> {
  const repo = openRepo(deps, req.repository, signal);
  const ref = argText(req.ref);
  if (!ref.startsWith("refs/")) throw invalidArgument("invalid refname");
  try {
    await repo.run({ subcommand: "show-ref", flags: ["--verify", "--quiet"], args: [ref] });
    return create(RefExistsResponseSchema, { value: true });
  } catch (err) {
    // Exit status 1 is show-ref's "no such ref"; anything else is a failure.
    if (err instanceof GitCommandError && err.exitCode === 1) return create(RefExistsResponseSchema, { value: false });
    throw asRpcError(err, "checking reference");
  }
}

export async function findBranch(
  deps: RefDeps,
  req: FindBranchRequest,
  signal?: AbortSignal,
): Promise<FindBranchResponse> {
  const repo = openRepo(deps, req.repository, signal);
  if (req.name.length === 0) throw invalidArgument("Branch name cannot be empty");
  const refname = `refs/heads/${argText(req.name)}`;
  try {
    // for-each-ref matches prefixes and globs, so a different first match means the
    // name is ambiguous (e.g. "feature" when only "feature/x" exists).
    const proc = repo.spawn({
      subcommand: "for-each-ref",
      flags: ["--count=1", "--format=%(refname)%00%(objectname)"],
      args: [refname],
    });
    let found: { name: string; oid: string } | undefined;
    for await (const line of gitRecords(proc)) {
      const [name = "", oid = ""] = line.toString("utf8").split("\0");
      found ??= { name, oid };
    }
    if (!found) return create(FindBranchResponseSchema);
    if (found.name !== refname) {
      throw invalidArgument(
        `target reference is ambiguous: reference is ambiguous: conflicts with ${JSON.stringify(found.name)}`,
      );
    }
    const commit = await readCommit(await repo.reader(), found.oid);
    if (!commit) throw internal("object not found");
    return create(FindBranchResponseSchema, {
      branch: create(BranchSchema, { name: copyBytes(req.name), targetCommit: commit }),
    });
  } catch (err) {
    throw asRpcError(err, "find branch");
  }
}

/** Reads the commits of one batch of "refname\0oid" lines, pipelined through cat-file. */
async function branchCommits(reader: ObjectReader, batch: LineBatch): Promise<{ name: Buffer; commit: GitCommit }[]> {
  return Promise.all(
    batch.lines.map(async (line) => {
      const parts = line.toString("latin1").split("\0");
      if (parts.length !== 2) throw new Error(`error parsing ref ${JSON.stringify(line.toString("utf8"))}`);
      const [name, oid] = parts as [string, string];
      const commit = await readCommit(reader, oid);
      if (!commit) throw new Error(`object not found: ${oid} (${name})`);
      return { name: Buffer.from(name, "latin1"), commit };
    }),
  );
}

const LOCAL_BRANCH_SORT: Record<FindLocalBranchesRequest_SortBy, string> = {
  [FindLocalBranchesRequest_SortBy.NAME]: "refname",
  [FindLocalBranchesRequest_SortBy.UPDATED_ASC]: "committerdate",
  [FindLocalBranchesRequest_SortBy.UPDATED_DESC]: "-committerdate",
};

/**
 * FindLocalBranches. Branch names are full ref names (refs/heads/...), as upstream
 * sends them; commits are read through cat-file (upstream's pre-"ref_iterator" path,
 * which fills the same fields as FindCommit).
 */
export async function* findLocalBranches(
  deps: RefDeps,
  req: FindLocalBranchesRequest,
  signal?: AbortSignal,
): AsyncGenerator<FindLocalBranchesResponse> {
  const repo = openRepo(deps, req.repository, signal);
  const excludes: string[] = [];
  for (const pattern of req.excludePatterns) {
    const p = latin1(pattern);
    if (p === "") throw invalidArgument("empty exclude pattern");
    if (p.includes("\0")) throw invalidArgument(`exclude pattern contains null byte: ${JSON.stringify(p)}`);
    if (!p.startsWith("refs/heads/")) {
      throw invalidArgument(`exclude pattern must start with "refs/heads/": ${JSON.stringify(argText(pattern))}`);
    }
    excludes.push(argText(pattern));
  }
  const sort = LOCAL_BRANCH_SORT[req.sortBy];
  if (sort === undefined) throw invalidArgument(`unsupported sort key ${req.sortBy}`);

  const reader = await repo.reader();
  const lines = forEachRefLines(repo, deps.git, {
    format: BRANCH_FORMAT,
    sort,
    patterns: ["refs/heads"],
    excludePatterns: excludes,
  });
  try {
    for await (const batch of pagedLines(lines, linePaging(req.paginationParams))) {
      const branches = await branchCommits(reader, batch);
      yield create(FindLocalBranchesResponseSchema, {
        localBranches: branches.map((b) => create(BranchSchema, { name: b.name, targetCommit: b.commit })),
      });
    }
  } catch (err) {
    throw err instanceof RpcError ? err : asRpcError(err, "finding refs");
  }
}

export async function* findAllBranches(
  deps: RefDeps,
  req: FindAllBranchesRequest,
  signal?: AbortSignal,
): AsyncGenerator<FindAllBranchesResponse> {
  const repo = openRepo(deps, req.repository, signal);
  const reader = await repo.reader();
  try {
    let patterns = ["refs/heads", "refs/remotes"];
    const extraFlags: string[] = [];
    if (req.mergedOnly) {
      const target = await defaultBranch(repo, reader);
      extraFlags.push(`--merged=${target}`);
      if (req.mergedBranches.length > 0) patterns = req.mergedBranches.map((b) => argText(b));
    }
    const lines = forEachRefLines(repo, deps.git, { format: BRANCH_FORMAT, patterns, extraFlags });
    for await (const batch of pagedLines(lines, linePaging(undefined))) {
      const branches = await branchCommits(reader, batch);
      yield create(FindAllBranchesResponseSchema, {
        branches: branches.map((b) => create(FindAllBranchesResponse_BranchSchema, { name: b.name, target: b.commit })),
      });
    }
  } catch (err) {
    throw asRpcError(err, "finding refs");
  }
}
