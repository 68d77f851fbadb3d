// WriteRef: point a reference (or HEAD, symbolically) at a revision, optionally only
// if it still points at an expected old value; an all-zero revision deletes it. Goes
// through `git update-ref`, so the reference-transaction hook sees it like any other
// ref update. Codes and messages follow upstream's write_ref.go and updateref package.
import { create } from "@bufbuild/protobuf";
import { type WriteRefRequest, WriteRefResponseSchema } from "../../../gen/repository_pb.js";
import { Code, internal, invalidArgument, notFound, RpcError } from "../../../shared/grpc/errors.js";
import { GitCommandError } from "../../git/command.js";
import { referenceNameError, revisionError } from "../../git/revision.js";
import type { RepositoryServiceDeps } from "./deps.js";

function validated(what: string, value: Uint8Array): string {
  const reason = revisionError(value);
  if (reason !== null) throw invalidArgument(`${what}: ${reason}`);
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
    if (err instanceof GitCommandError && err.exitCode === 1) return null;
    if (err instanceof RpcError) throw err;
    throw internal(`resolving revision: ${(err as Error).message}`, err);
  }
}

async function zeroOid(deps: RepositoryServiceDeps, repoPath: string): Promise<string> {
  const { stdout } = await deps.git.run({ repoPath, subcommand: "rev-parse", flags: ["--show-object-format"] });
  const format = stdout.toString("utf8").trim();
  if (format === "sha1") return "0".repeat(40);
  if (format === "sha256") return "0".repeat(64);
  throw internal(`detecting object format: unknown object format "${format}"`);
}

/** git-update-ref's refusals, as upstream's updateref package classifies them. */
const UPDATE_REF_ERRORS: { pattern: RegExp; error: (m: RegExpExecArray) => RpcError }[] = [
  {
    pattern: /^fatal: (?:.*: )?cannot lock ref '(.+?)': Unable to create '.*': File exists\./m,
    error: (m) => new RpcError(Code.ABORTED, "reference is locked already", { metadata: { reference: m[1] ?? "" } }),
  },
  {
    pattern: /^fatal: invalid ref format: (.*)$/m,
    error: (m) => updateRefError("invalid reference format", { reference: m[1] ?? "" }),
  },
  {
    pattern: /^fatal: (?:.*: )?cannot lock ref '.*': '(.*)' exists; cannot create '(.*)'$/m,
    error: (m) =>
      updateRefError("file directory conflict", {
        existing_reference: m[1] ?? "",
        conflicting_reference: m[2] ?? "",
      }),
  },
  {
    pattern: /^fatal: (?:.*: )?trying to write ref '(.*)' with nonexistent object (.*)$/m,
    error: (m) => updateRefError("target object missing", { reference: m[1] ?? "", object_id: m[2] ?? "" }),
  },
  {
    pattern: /^fatal: (?:.*: )?trying to write non-commit object (.*) to branch '(.*)'$/m,
    error: (m) => updateRefError("target object not a commit", { reference: m[2] ?? "", object_id: m[1] ?? "" }),
  },
  {
    pattern: /^fatal: (?:.*: )?cannot lock ref '(.*)': is at (.*) but expected (.*)$/m,
    error: (m) =>
      updateRefError("reference does not point to expected object", {
        reference: m[1] ?? "",
        actual_object_id: m[2] ?? "",
        expected_object_id: m[3] ?? "",
      }),
  },
  {
    pattern: /^fatal: (?:.*: )?cannot lock ref '(.*)': reference already exists$/m,
    error: (m) => updateRefError("reference already exists", { reference: m[1] ?? "" }),
  },
];

function updateRefError(reason: string, metadata: Record<string, string>): RpcError {
  return new RpcError(Code.INTERNAL, `error when running update-ref command: ${reason}`, { metadata });
}

function classifyUpdateRefFailure(err: GitCommandError): RpcError {
  for (const { pattern, error } of UPDATE_REF_ERRORS) {
    const m = pattern.exec(err.stderr);
    if (m) return error(m);
  }
  return new RpcError(
    Code.INTERNAL,
    `error when running update-ref command: exit status ${err.exitCode ?? "?"}, stderr: ${JSON.stringify(err.stderr)}`,
  );
}

async function setDefaultBranch(deps: RepositoryServiceDeps, repoPath: string, reference: string): Promise<void> {
  // Upstream does not check that the branch exists, only that its name is valid.
  if (referenceNameError(reference) !== null) {
    throw internal(`setting default branch: ${JSON.stringify(reference)} is a malformed refname`);
  }
  try {
    await deps.git.run({ repoPath, subcommand: "symbolic-ref", args: ["HEAD", reference] });
  } catch (err) {
    if (err instanceof RpcError) throw err;
    const detail = err instanceof GitCommandError ? err.stderr.trim() : (err as Error).message;
    throw internal(`setting default branch: ${detail}`, err);
  }
}

export async function writeRef(deps: RepositoryServiceDeps, req: WriteRefRequest) {
  const repoPath = deps.locator.repositoryPath(req.repository);
  const ref = validated("invalid ref", req.ref);
  const revision = validated("invalid revision", req.revision);
  const oldRevision = req.oldRevision.length > 0 ? validated("invalid OldRevision", req.oldRevision) : undefined;
  if (ref !== "HEAD" && !ref.startsWith("refs/")) throw invalidArgument("ref has to be a full reference");

  if (ref === "HEAD") {
    await setDefaultBranch(deps, repoPath, revision);
    return create(WriteRefResponseSchema);
  }

  const zero = await zeroOid(deps, repoPath);
  // All zeros as the new value deletes the reference.
  const newOid = revision === zero ? zero : await resolve(deps, repoPath, revision);
  if (newOid === null) throw notFound("resolving new revision: reference not found");
  let oldOid = "";
  if (oldRevision !== undefined) {
    // All zeros as the old value means "must not exist yet".
    const resolved = oldRevision === zero ? zero : await resolve(deps, repoPath, oldRevision);
    if (resolved === null) throw notFound("resolving old revision: reference not found");
    oldOid = resolved;
  }
  try {
    await deps.git.run({
      repoPath,
      subcommand: "update-ref",
      flags: ["-z", "--stdin"],
      stdin: `update ${ref}\0${newOid}\0${oldOid}\0`,
    });
  } catch (err) {
    if (err instanceof GitCommandError && err.exitCode !== null) throw classifyUpdateRefFailure(err);
    if (err instanceof RpcError) throw err;
    throw internal(`error when running update-ref command: ${(err as Error).message}`, err);
  }
  return create(WriteRefResponseSchema);
}
