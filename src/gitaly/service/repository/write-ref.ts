// WriteRef: point a reference (or HEAD, symbolically) at a revision, optionally only
// if it still points at an expected old value. Goes through `git update-ref`, so the
// reference-transaction hook sees it like any other ref update.
import { create } from "@bufbuild/protobuf";
import { type WriteRefRequest, WriteRefResponseSchema } from "../../../gen/repository_pb.js";
import { Code, invalidArgument, notFound, RpcError } from "../../../shared/grpc/errors.js";
import { validateRevision } from "../../git/revision.js";
import type { RepositoryServiceDeps } from "./deps.js";

function validated(what: string, value: Uint8Array): string {
  try {
    validateRevision(value);
  } catch (err) {
    throw invalidArgument(`${what}: ${(err as Error).message}`);
  }
  return Buffer.from(value).toString("utf8");
}

async function resolve(deps: RepositoryServiceDeps, repoPath: string, revision: string): Promise<string | null> {
  try {
    const { stdout } = await deps.git.run({
      repoPath,
      subcommand: "rev-parse",
      flags: ["--verify", "--quiet"],
      args: [`${revision}^{object}`],
    });
    return stdout.toString("utf8").trim();
  } catch (err) {
    if (err instanceof RpcError) throw err;
    return null;
  }
}

export async function writeRef(deps: RepositoryServiceDeps, req: WriteRefRequest) {
  const repoPath = deps.locator.repositoryPath(req.repository);
  const ref = validated("invalid ref", req.ref);
  const revision = validated("invalid revision", req.revision);
  const oldRevision = req.oldRevision.length > 0 ? validated("invalid OldRevision", req.oldRevision) : undefined;
  if (ref !== "HEAD" && !ref.startsWith("refs/")) throw invalidArgument("ref has to be a full reference");

  if (ref === "HEAD") {
    if (!revision.startsWith("refs/")) throw invalidArgument("invalid revision: HEAD must point to a full reference");
    await deps.git.run({ repoPath, subcommand: "symbolic-ref", args: ["HEAD", revision] });
    return create(WriteRefResponseSchema);
  }

  const newOid = await resolve(deps, repoPath, revision);
  if (!newOid) throw notFound(`resolving new revision: reference not found`);
  let oldOid: string | undefined;
  if (oldRevision !== undefined) {
    // An all-zero old value means "must not exist yet"; update-ref understands it.
    oldOid = /^0+$/.test(oldRevision) ? oldRevision : ((await resolve(deps, repoPath, oldRevision)) ?? undefined);
    if (oldOid === undefined) throw notFound("resolving old revision: reference not found");
  }
  const line = oldOid ? `update ${ref}\0${newOid}\0${oldOid}\0` : `update ${ref}\0${newOid}\0\0`;
  try {
    await deps.git.run({ repoPath, subcommand: "update-ref", flags: ["-z", "--stdin"], stdin: line });
  } catch (err) {
    if (err instanceof RpcError) throw err;
    const stderr = (err as { stderr?: string }).stderr ?? (err as Error).message;
    if (/cannot lock ref|is at .* but expected|unable to resolve reference/.test(stderr)) {
      throw new RpcError(Code.FAILED_PRECONDITION, `error when running update-ref command: ${stderr.trim()}`);
    }
    throw new RpcError(Code.INTERNAL, `error when running update-ref command: ${stderr.trim()}`);
  }
  return create(WriteRefResponseSchema);
}
