// Read-only repository queries: size, info, object format, branches, checksum, config.

import { readFile } from "node:fs/promises";
import { join } from "node:path";
import { create } from "@bufbuild/protobuf";
import {
  type CalculateChecksumRequest,
  CalculateChecksumResponseSchema,
  type GetConfigRequest,
  GetConfigResponseSchema,
  type HasLocalBranchesRequest,
  HasLocalBranchesResponseSchema,
  type ObjectFormatRequest,
  ObjectFormatResponseSchema,
  type RepositoryInfoRequest,
  RepositoryInfoResponse_AlternatesInfoSchema,
  RepositoryInfoResponse_BitmapInfoSchema,
  RepositoryInfoResponse_CommitGraphInfoSchema,
  RepositoryInfoResponse_MultiPackIndexInfoSchema,
  RepositoryInfoResponse_ObjectsInfoSchema,
  RepositoryInfoResponse_ReferencesInfo_ReferenceBackend,
  RepositoryInfoResponse_ReferencesInfoSchema,
  RepositoryInfoResponseSchema,
  type RepositorySizeRequest,
  RepositorySizeResponseSchema,
} from "../../../gen/repository_pb.js";
import { ObjectFormat } from "../../../gen/shared_pb.js";
import { Code, internal, notFound, RpcError } from "../../../shared/grpc/errors.js";
import { checksumOfShowRef, ZERO_CHECKSUM } from "./checksum.js";
import type { RepositoryServiceDeps } from "./deps.js";
import { directorySize, repositoryStats } from "./stats.js";

export async function repositorySize(deps: RepositoryServiceDeps, req: RepositorySizeRequest) {
  const path = deps.locator.repositoryPath(req.repository);
  return create(RepositorySizeResponseSchema, { size: BigInt(Math.floor((await directorySize(path)) / 1024)) });
}

export async function repositoryInfo(deps: RepositoryServiceDeps, req: RepositoryInfoRequest) {
  const path = deps.locator.repositoryPath(req.repository);
  const s = await repositoryStats(path);
  const u = (n: number) => BigInt(n);
  return create(RepositoryInfoResponseSchema, {
    size: u(s.sizeBytes),
    references: create(RepositoryInfoResponse_ReferencesInfoSchema, {
      looseCount: u(s.references.looseCount),
      packedSize: u(s.references.packedSize),
      // This implementation stores references as files; reftable is not supported.
      referenceBackend: RepositoryInfoResponse_ReferencesInfo_ReferenceBackend.FILES,
    }),
    objects: create(RepositoryInfoResponse_ObjectsInfoSchema, {
      size: u(s.looseObjects.size + s.packfiles.size),
      recentSize: u(s.looseObjects.size - s.looseObjects.staleSize + s.packfiles.size - s.packfiles.cruftSize),
      staleSize: u(s.looseObjects.staleSize + s.packfiles.cruftSize),
      keepSize: u(s.packfiles.keepSize),
      packfileCount: u(s.packfiles.count),
      reverseIndexCount: u(s.packfiles.reverseIndexCount),
      cruftCount: u(s.packfiles.cruftCount),
      keepCount: u(s.packfiles.keepCount),
      looseObjectsCount: u(s.looseObjects.count),
      staleLooseObjectsCount: u(s.looseObjects.staleCount),
      looseObjectsGarbageCount: u(s.looseObjects.garbageCount),
    }),
    // Like upstream, the optional parts are only present when the repository has them.
    ...(s.commitGraph.exists
      ? {
          commitGraph: create(RepositoryInfoResponse_CommitGraphInfoSchema, {
            commitGraphChainLength: u(s.commitGraph.chainLength),
          }),
        }
      : {}),
    ...(s.packfiles.hasBitmap ? { bitmap: create(RepositoryInfoResponse_BitmapInfoSchema, { version: 1n }) } : {}),
    ...(s.multiPackIndex.exists
      ? { multiPackIndex: create(RepositoryInfoResponse_MultiPackIndexInfoSchema, { version: 1n }) }
      : {}),
    ...(s.alternatesFileExists
      ? { alternates: create(RepositoryInfoResponse_AlternatesInfoSchema, { objectDirectories: s.alternates }) }
      : {}),
    isObjectPool: false,
  });
}

export async function objectFormat(deps: RepositoryServiceDeps, req: ObjectFormatRequest) {
  const path = deps.locator.repositoryPath(req.repository);
  const { stdout } = await deps.git.run({ repoPath: path, subcommand: "rev-parse", flags: ["--show-object-format"] });
  const name = stdout.toString("utf8").trim();
  const format = name === "sha256" ? ObjectFormat.SHA256 : name === "sha1" ? ObjectFormat.SHA1 : undefined;
  if (format === undefined) throw internal(`detecting object hash: unknown object format "${name}"`);
  return create(ObjectFormatResponseSchema, { format });
}

export async function hasLocalBranches(deps: RepositoryServiceDeps, req: HasLocalBranchesRequest) {
  const path = deps.locator.repositoryPath(req.repository);
  const { stdout } = await deps.git.run({
    repoPath: path,
    subcommand: "for-each-ref",
    flags: ["--count=1", "--format=%(refname)"],
    args: ["refs/heads/"],
  });
  return create(HasLocalBranchesResponseSchema, { value: stdout.length > 0 });
}

/** Whether git itself accepts the directory as a bare repository (a broken HEAD fails this). */
async function isValidBareRepository(deps: RepositoryServiceDeps, path: string): Promise<boolean> {
  try {
    const { stdout } = await deps.git.run({ repoPath: path, subcommand: "rev-parse", flags: ["--is-bare-repository"] });
    return stdout.toString("utf8").trim().toLowerCase() === "true";
  } catch {
    return false;
  }
}

export async function calculateChecksum(deps: RepositoryServiceDeps, req: CalculateChecksumRequest) {
  const path = deps.locator.repositoryPath(req.repository);
  let output = "";
  let failed = false;
  try {
    output = (await deps.git.run({ repoPath: path, subcommand: "show-ref", flags: ["--head"] })).stdout.toString(
      "utf8",
    );
  } catch (err) {
    if (err instanceof RpcError) throw err;
    // show-ref exits 1 when there are no refs at all; a corrupt ref store fails too.
    failed = true;
  }
  const checksum = failed ? ZERO_CHECKSUM : checksumOfShowRef(output);
  // As upstream: a zero or failed checksum is only an answer if git accepts the repository.
  if (checksum === ZERO_CHECKSUM && !(await isValidBareRepository(deps, path))) {
    throw new RpcError(Code.DATA_LOSS, `not a git repository '${path}'`);
  }
  return create(CalculateChecksumResponseSchema, { checksum });
}

export async function* getConfig(deps: RepositoryServiceDeps, req: GetConfigRequest) {
  const path = deps.locator.repositoryPath(req.repository);
  const configPath = join(path, "config");
  let data: Buffer;
  try {
    data = await readFile(configPath);
  } catch (err) {
    // Go's *PathError wording, as upstream reports it.
    if ((err as NodeJS.ErrnoException).code === "ENOENT") {
      throw notFound(`opening gitconfig: open ${configPath}: no such file or directory`);
    }
    throw internal(`opening gitconfig: ${(err as Error).message}`, err);
  }
  for (let off = 0; off < data.length; off += 128 * 1024) {
    yield create(GetConfigResponseSchema, { data: data.subarray(off, off + 128 * 1024) });
  }
}
