// RepositoryExists, CreateRepository, RemoveRepository.

import { mkdir, rename, rm, stat } from "node:fs/promises";
import { dirname, join } from "node:path";
import { create } from "@bufbuild/protobuf";
import {
  type CreateRepositoryRequest,
  CreateRepositoryResponseSchema,
  type RemoveRepositoryRequest,
  RemoveRepositoryResponseSchema,
  type RepositoryExistsRequest,
  RepositoryExistsResponseSchema,
} from "../../../gen/repository_pb.js";
import { ObjectFormat, type Repository } from "../../../gen/shared_pb.js";
import { alreadyExists, Code, internal, invalidArgument, notFound, RpcError } from "../../../shared/grpc/errors.js";
import { GitCommandError } from "../../git/command.js";
import type { RepositoryServiceDeps } from "./deps.js";

async function exists(path: string): Promise<boolean> {
  try {
    await stat(path);
    return true;
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === "ENOENT") return false;
    throw err;
  }
}

/** A directory git can use as a repository: it has objects/, refs/ and HEAD. */
export async function isGitDirectory(path: string): Promise<boolean> {
  const checks = await Promise.all(["objects", "refs", "HEAD"].map((p) => exists(join(path, p))));
  return checks.every(Boolean);
}

export async function repositoryExists(deps: RepositoryServiceDeps, req: RepositoryExistsRequest) {
  const path = deps.locator.repositoryPath(req.repository, { mustExist: false });
  return create(RepositoryExistsResponseSchema, { exists: await isGitDirectory(path) });
}

function objectFormatFlag(format: ObjectFormat): string {
  switch (format) {
    case ObjectFormat.UNSPECIFIED:
    case ObjectFormat.SHA1:
      return "sha1";
    case ObjectFormat.SHA256:
      return "sha256";
    default:
      throw invalidArgument(`unknown object format: "${format}"`);
  }
}

/** Go's %q for the ASCII text git prints: JSON escaping is the same there. */
function quoted(text: string): string {
  return JSON.stringify(text);
}

/**
 * Creates a bare repository beside its final place, then renames it in: a crash or a
 * concurrent creation never leaves a half-initialised repository at the path.
 */
export async function createBareRepository(
  deps: RepositoryServiceDeps,
  repo: Repository | undefined,
  options: { defaultBranch?: string; objectFormat?: ObjectFormat; signal?: AbortSignal } = {},
): Promise<string> {
  const target = deps.locator.repositoryPath(repo, { mustExist: false });
  // Upstream validates the request (object format included) before looking at the disk.
  const format = objectFormatFlag(options.objectFormat ?? ObjectFormat.UNSPECIFIED);
  if (await exists(target)) throw alreadyExists("creating repository: repository exists already");
  const branch = options.defaultBranch || deps.defaultBranch || "main";
  const tmp = await deps.locator.tempDir(repo?.storageName ?? "", "create");
  try {
    try {
      await deps.git.run({
        subcommand: "init",
        flags: ["--bare", "--quiet", `--initial-branch=${branch}`, `--object-format=${format}`],
        args: [tmp],
        signal: options.signal,
      });
    } catch (err) {
      if (err instanceof GitCommandError && err.exitCode !== null) {
        // git itself judges the branch name, as upstream lets it.
        throw internal(
          `creating repository: creating repository: exit status ${err.exitCode}, stderr: ${quoted(err.stderr)}`,
          err,
        );
      }
      throw err;
    }
    await mkdir(dirname(target), { recursive: true });
    if (await exists(target)) throw alreadyExists("creating repository: repository exists already");
    await rename(tmp, target);
    return target;
  } catch (err) {
    await rm(tmp, { recursive: true, force: true });
    if (err instanceof RpcError) throw err;
    throw internal(`creating repository: ${(err as Error).message}`, err);
  }
}

export async function createRepository(
  deps: RepositoryServiceDeps,
  req: CreateRepositoryRequest,
  signal?: AbortSignal,
) {
  const branch = Buffer.from(req.defaultBranch).toString("utf8");
  await createBareRepository(deps, req.repository, { defaultBranch: branch, objectFormat: req.objectFormat, signal });
  return create(CreateRepositoryResponseSchema);
}

/** Moves the repository out of the way first, so readers never see it half deleted. */
export async function removeRepository(deps: RepositoryServiceDeps, req: RemoveRepositoryRequest) {
  // Upstream Gitaly validates existence like every other RPC: NotFound "repository not found".
  const path = deps.locator.repositoryPath(req.repository);
  const trash = await deps.locator.tempDir(req.repository?.storageName ?? "", "remove");
  try {
    await rename(path, join(trash, "repo"));
  } catch (err) {
    await rm(trash, { recursive: true, force: true });
    if ((err as NodeJS.ErrnoException).code === "ENOENT") throw notFound("repository does not exist");
    throw new RpcError(Code.INTERNAL, `removing repository: ${(err as Error).message}`);
  }
  await rm(trash, { recursive: true, force: true });
  return create(RemoveRepositoryResponseSchema);
}
