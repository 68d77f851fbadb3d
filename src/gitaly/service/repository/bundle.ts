// CreateBundle / FetchBundle: whole-repository bundles, for backups and for seeding
// a repository from a file.

import { type FileHandle, open, rm } from "node:fs/promises";
import { join } from "node:path";
import { create } from "@bufbuild/protobuf";
import {
  type CreateBundleRequest,
  CreateBundleResponseSchema,
  type FetchBundleRequest,
  FetchBundleResponseSchema,
} from "../../../gen/repository_pb.js";
import { Code, failedPrecondition, internal, RpcError } from "../../../shared/grpc/errors.js";
import { GitCommandError } from "../../git/command.js";
import type { RepositoryServiceDeps } from "./deps.js";

const EMPTY_BUNDLE = "create bundle: refusing to create empty bundle";

export async function* createBundle(deps: RepositoryServiceDeps, req: CreateBundleRequest, signal?: AbortSignal) {
  const repoPath = deps.locator.repositoryPath(req.repository);
  // git writes the bundle header before it notices there is nothing to bundle, so check
  // first: the client must get the error without any data. FailedPrecondition is what
  // gitaly-backup maps to "empty bundle".
  const { stdout: refs } = await deps.git.run({
    repoPath,
    subcommand: "for-each-ref",
    flags: ["--count=1", "--format=%(refname)"],
  });
  if (refs.length === 0) throw failedPrecondition(EMPTY_BUNDLE);
  const proc = deps.git.spawn({
    repoPath,
    subcommand: "bundle",
    action: "create",
    args: ["-", "--all"],
    signal,
  });
  try {
    for await (const chunk of proc.stdout) {
      yield create(CreateBundleResponseSchema, { data: chunk as Buffer });
    }
    await proc.wait();
  } catch (err) {
    if (err instanceof GitCommandError) {
      if (err.stderr.includes("Refusing to create empty bundle")) throw failedPrecondition(EMPTY_BUNDLE);
      throw new RpcError(Code.INTERNAL, `create bundle: ${err.message}`);
    }
    throw err;
  } finally {
    // A client that stops reading must not leave git running.
    proc.kill();
  }
}

/**
 * The branch HEAD should name after a fetch, as upstream's GuessHead picks it: main,
 * then master, then the first branch (by name) at HEAD's object.
 */
export function guessHead(listHeads: string): string | null {
  const lines = listHeads
    .split("\n")
    .map((l) => l.split(" "))
    .filter((parts): parts is [string, string] => parts.length === 2);
  const head = lines.find(([, name]) => name === "HEAD")?.[0];
  if (head === undefined) return null;
  const branches = lines
    .filter(([oid, name]) => oid === head && name.startsWith("refs/heads/"))
    .map(([, name]) => name)
    .sort();
  for (const preferred of ["refs/heads/main", "refs/heads/master"]) {
    if (branches.includes(preferred)) return preferred;
  }
  return branches[0] ?? "";
}

export async function fetchBundle(
  deps: RepositoryServiceDeps,
  requests: AsyncIterable<FetchBundleRequest>,
  signal?: AbortSignal,
) {
  let repoPath: string | undefined;
  let updateHead = false;
  let tmp: string | undefined;
  let file: FileHandle | undefined;
  try {
    for await (const req of requests) {
      if (repoPath === undefined) {
        repoPath = deps.locator.repositoryPath(req.repository);
        updateHead = req.updateHead;
        tmp = await deps.locator.tempDir(req.repository?.storageName ?? "", "bundle");
        file = await open(join(tmp, "repo.bundle"), "wx", 0o600);
      }
      if (req.data.length > 0) await file?.writeFile(req.data);
    }
    if (repoPath === undefined || !file || !tmp) throw internal("first request: EOF");
    await file.close();
    file = undefined;
    const bundle = join(tmp, "repo.bundle");
    try {
      await deps.git.run({
        repoPath,
        subcommand: "fetch",
        flags: ["--quiet", "--atomic", "--force", "--no-write-fetch-head"],
        args: [bundle, "+refs/*:refs/*"],
        // As upstream: bundles with fsck warnings still fetch, as they did before git 2.46.
        config: [{ key: "transfer.fsckObjects", value: "false" }],
        signal,
      });
    } catch (err) {
      if (err instanceof RpcError) throw err;
      throw new RpcError(
        Code.INTERNAL,
        `fetch bundle: ${err instanceof GitCommandError ? err.stderr.trim() || err.message : (err as Error).message}`,
      );
    }
    if (updateHead) {
      const { stdout } = await deps.git.run({ repoPath, subcommand: "bundle", action: "list-heads", args: [bundle] });
      const branch = guessHead(stdout.toString("utf8"));
      if (branch === "") {
        throw internal("fetch bundle: update head from bundle: guess head: reference not found");
      }
      if (branch !== null) await deps.git.run({ repoPath, subcommand: "symbolic-ref", args: ["HEAD", branch] });
    }
    return create(FetchBundleResponseSchema);
  } finally {
    await file?.close();
    if (tmp) await rm(tmp, { recursive: true, force: true });
  }
}
