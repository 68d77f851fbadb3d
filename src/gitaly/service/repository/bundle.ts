// CreateBundle / FetchBundle: whole-repository bundles, for backups and for seeding
// a repository from a file.

import { createWriteStream } from "node:fs";
import { rm } from "node:fs/promises";
import { join } from "node:path";
import { finished } from "node:stream/promises";
import { create } from "@bufbuild/protobuf";
import {
  type CreateBundleRequest,
  CreateBundleResponseSchema,
  type FetchBundleRequest,
  FetchBundleResponseSchema,
} from "../../../gen/repository_pb.js";
import { Code, failedPrecondition, invalidArgument, RpcError } from "../../../shared/grpc/errors.js";
import type { RepositoryServiceDeps } from "./deps.js";

export async function* createBundle(deps: RepositoryServiceDeps, req: CreateBundleRequest, signal?: AbortSignal) {
  const repoPath = deps.locator.repositoryPath(req.repository);
  const { stdout: refs } = await deps.git.run({
    repoPath,
    subcommand: "for-each-ref",
    flags: ["--count=1", "--format=%(refname)"],
  });
  if (refs.length === 0)
    throw failedPrecondition("CreateBundle: cannot create bundle: refusing to create empty bundle");
  const proc = deps.git.spawn({
    repoPath,
    subcommand: "bundle",
    action: "create",
    args: ["-", "--all"],
    signal,
  });
  for await (const chunk of proc.stdout) {
    yield create(CreateBundleResponseSchema, { data: chunk as Buffer });
  }
  await proc.wait();
}

export async function fetchBundle(
  deps: RepositoryServiceDeps,
  requests: AsyncIterable<FetchBundleRequest>,
  signal?: AbortSignal,
) {
  let repoPath: string | undefined;
  let storageName = "";
  let updateHead = false;
  let tmp: string | undefined;
  try {
    let out: ReturnType<typeof createWriteStream> | undefined;
    for await (const req of requests) {
      if (repoPath === undefined) {
        repoPath = deps.locator.repositoryPath(req.repository);
        storageName = req.repository?.storageName ?? "";
        updateHead = req.updateHead;
        tmp = await deps.locator.tempDir(storageName, "bundle");
        out = createWriteStream(join(tmp, "repo.bundle"));
      }
      if (out && !out.write(req.data)) await new Promise<void>((r) => out?.once("drain", () => r()));
    }
    if (repoPath === undefined || !out || !tmp) throw invalidArgument("empty Repository");
    out.end();
    await finished(out);
    const bundle = join(tmp, "repo.bundle");
    try {
      await deps.git.run({
        repoPath,
        subcommand: "fetch",
        flags: ["--quiet", "--atomic", "--force", "--no-write-fetch-head"],
        args: [bundle, "+refs/*:refs/*"],
        signal,
      });
    } catch (err) {
      if (err instanceof RpcError) throw err;
      throw new RpcError(
        Code.INTERNAL,
        `fetch bundle: ${(err as { stderr?: string }).stderr ?? (err as Error).message}`,
      );
    }
    if (updateHead) {
      const { stdout } = await deps.git.run({ repoPath, subcommand: "bundle", action: "list-heads", args: [bundle] });
      const head = /^([0-9a-f]+) HEAD$/m.exec(stdout.toString("utf8"));
      const headOid = head?.[1];
      if (headOid) {
        // Point HEAD at the branch the bundle's HEAD matches, as `git clone` would.
        const match = new RegExp(`^${headOid} (refs/heads/\\S+)$`, "m").exec(stdout.toString("utf8"));
        if (match?.[1]) await deps.git.run({ repoPath, subcommand: "symbolic-ref", args: ["HEAD", match[1]] });
      }
    }
    return create(FetchBundleResponseSchema);
  } finally {
    if (tmp) await rm(tmp, { recursive: true, force: true });
  }
}
