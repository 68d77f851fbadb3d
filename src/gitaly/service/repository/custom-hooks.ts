// GetCustomHooks / SetCustomHooks: the repository's server-side hooks travel as a tar
// of custom_hooks/. Setting them swaps the whole directory in one rename, so a push
// never runs a half-written set of hooks.

import { mkdir, rename, rm } from "node:fs/promises";
import { join } from "node:path";
import { PassThrough, type Readable } from "node:stream";
import { create } from "@bufbuild/protobuf";
import {
  type GetCustomHooksRequest,
  GetCustomHooksResponseSchema,
  type SetCustomHooksRequest,
  SetCustomHooksResponseSchema,
} from "../../../gen/repository_pb.js";
import { Code, invalidArgument, RpcError } from "../../../shared/grpc/errors.js";
import { collectEntries, extractTar, packEntries, UnsafeArchiveError } from "../../archive/tar.js";
import type { RepositoryServiceDeps } from "./deps.js";

export const CUSTOM_HOOKS_DIR = "custom_hooks";

export async function* getCustomHooks(deps: RepositoryServiceDeps, req: GetCustomHooksRequest) {
  const repoPath = deps.locator.repositoryPath(req.repository);
  const entries = await collectEntries(repoPath, {
    filter: (p) => p === CUSTOM_HOOKS_DIR || p.startsWith(`${CUSTOM_HOOKS_DIR}/`),
  });
  // Upstream sends no data at all when the repository has no hooks.
  if (entries.length === 0) return;
  for await (const chunk of packEntries(entries)) {
    yield create(GetCustomHooksResponseSchema, { data: chunk as Buffer });
  }
}

/** Replaces custom_hooks/ of the repository at `repoPath` with the tar's content. */
export async function installCustomHooks(
  deps: RepositoryServiceDeps,
  storageName: string,
  repoPath: string,
  tarStream: Readable,
): Promise<void> {
  const staging = await deps.locator.tempDir(storageName, "hooks");
  try {
    const dest = join(staging, "new");
    await mkdir(dest);
    try {
      await extractTar(tarStream, dest, {
        only: CUSTOM_HOOKS_DIR,
        stripPrefix: true,
      });
    } catch (err) {
      if (err instanceof UnsafeArchiveError) throw invalidArgument(`extracting hooks: ${err.message}`);
      throw err;
    }
    // Swap: move the old hooks aside, move the new ones in, then delete the old.
    try {
      await rename(join(repoPath, CUSTOM_HOOKS_DIR), join(staging, "old"));
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== "ENOENT") throw err;
    }
    await rename(dest, join(repoPath, CUSTOM_HOOKS_DIR));
  } catch (err) {
    if (err instanceof RpcError) throw err;
    throw new RpcError(Code.INTERNAL, `setting custom hooks: ${(err as Error).message}`);
  } finally {
    await rm(staging, { recursive: true, force: true });
  }
}

export async function setCustomHooks(deps: RepositoryServiceDeps, requests: AsyncIterable<SetCustomHooksRequest>) {
  const body = new PassThrough();
  let repoPath: string | undefined;
  let storageName = "";
  let install: Promise<void> | undefined;
  try {
    for await (const req of requests) {
      if (repoPath === undefined) {
        repoPath = deps.locator.repositoryPath(req.repository);
        storageName = req.repository?.storageName ?? "";
        install = installCustomHooks(deps, storageName, repoPath, body);
        // Surface extraction errors even while we are still feeding data.
        install.catch(() => body.resume());
      }
      if (!body.write(req.data)) await new Promise<void>((r) => body.once("drain", () => r()));
    }
    if (repoPath === undefined) throw new RpcError(Code.INTERNAL, "getting first request: EOF");
    body.end();
    await install;
  } catch (err) {
    body.destroy();
    throw err;
  }
  return create(SetCustomHooksResponseSchema);
}
