// The two ref-writing RPCs of RefService. Both go through one `git update-ref`
// transaction run with the call's hook environment, so the reference-transaction hook
// (and through it Praefect's voting) sees every change.

import { create } from "@bufbuild/protobuf";
import type * as grpc from "@grpc/grpc-js";
import {
  type DeleteRefsRequest,
  type DeleteRefsResponse,
  DeleteRefsResponseSchema,
  type UpdateReferencesRequest,
  type UpdateReferencesResponse,
  UpdateReferencesResponseSchema,
} from "../../../gen/ref_pb.js";
import type { Repository } from "../../../gen/shared_pb.js";
import { Code, internal, invalidArgument, notFound, RpcError } from "../../../shared/grpc/errors.js";
import { argText, latin1 } from "../../git/objects/bytes.js";
import { gitRecords } from "../../git/objects/records.js";
import { openRepo, type RepoHandle } from "../../git/objects/repo-handle.js";
import { referenceNameError, revisionError } from "../../git/revision.js";
import { type TransactionManager, VotePhase, voteHash, voteOnCall } from "../../transaction/voting.js";
import { asRpcError } from "../commit/streaming.js";
import type { NodeDeps } from "../deps.js";
import { failureMessage, RefUpdateError, type RefUpdateFailure, RefUpdater } from "./update-ref.js";

type MutationDeps = Pick<NodeDeps, "locator" | "git" | "catfile" | "hooks"> & {
  /** Votes in Praefect's transactions; DeleteRefs votes itself (see deleteRefs). */
  transactions?: TransactionManager;
};

/** Cast before anything is locked. */
const PREPARING_PHASE = VotePhase.PREPARING_PHASE;
type Call = { metadata: grpc.Metadata; getPeer(): string };

/**
 * Upstream's Aborted handler replaces the message of every Aborted error with this one
 * and moves the original into the "error_details" metadata; done here directly.
 */
export const ABORTED_MESSAGE = "The operation could not be completed. Please try again.";

function aborted(details: string, metadata: Record<string, string> = {}): RpcError {
  return new RpcError(Code.ABORTED, ABORTED_MESSAGE, { metadata: { error_details: details, ...metadata } });
}

/** The length of object IDs in the repository (40 for SHA-1, 64 for SHA-256). */
async function objectIdLength(repo: RepoHandle): Promise<number> {
  const { stdout } = await repo.run({ subcommand: "rev-parse", flags: ["--show-object-format"] });
  const format = stdout.toString("latin1").trim();
  if (format === "sha1") return 40;
  if (format === "sha256") return 64;
  throw new Error(`detecting object hash: unknown object format "${format}"`);
}

/** upstream's ObjectHash.ValidateHex messages. */
function hexError(oid: string, length: number): string | null {
  if (oid.length !== length) {
    return `invalid object ID: ${JSON.stringify(oid)}, expected length ${length}, got ${oid.length}`;
  }
  const bad = /[^0-9a-f]/.exec(oid);
  return bad ? `invalid object ID: ${JSON.stringify(oid)}, invalid character '${bad[0]}'` : null;
}

function updateReferencesError(failure: RefUpdateFailure | null, err: Error): RpcError {
  // Upstream also attaches UpdateReferencesError details (not in our protos yet).
  switch (failure?.kind) {
    case "locked":
      return aborted(failureMessage(failure), { reference: failure.reference });
    case "mismatching-state":
      return aborted(failureMessage(failure), {
        reference: failure.reference,
        expected_object_id: failure.expected,
        actual_object_id: failure.actual,
      });
    case "nonexistent-object":
      return notFound(failureMessage(failure), { reference: failure.reference, missing_object: failure.oid });
    default:
      return internal(`committing update: ${err.message}`, err);
  }
}

export async function updateReferences(
  deps: MutationDeps,
  requests: AsyncIterable<UpdateReferencesRequest>,
  call: Call,
  signal?: AbortSignal,
): Promise<UpdateReferencesResponse> {
  const iterator = requests[Symbol.asyncIterator]();
  const first = await iterator.next();
  if (first.done) throw internal("receiving initial request: EOF");
  const repository = first.value.repository as Repository;
  const repo = openRepo(deps, first.value.repository, signal);

  let updater: RefUpdater | undefined;
  try {
    const oidLength = await objectIdLength(repo);
    const hooks = await deps.hooks.forCall(call, repository);
    updater = await RefUpdater.start(repo, hooks);

    let request: UpdateReferencesRequest = first.value;
    for (let isFirst = true; ; isFirst = false) {
      // Only the first message names the repository.
      if (!isFirst && request.repository) throw invalidArgument("repository set in subsequent request");
      if (request.updates.length === 0) throw invalidArgument("no updates specified");
      for (const update of request.updates) {
        const reference = argText(update.reference);
        const refError = referenceNameError(update.reference);
        if (refError !== null) {
          // Upstream adds an UpdateReferencesError{invalid_format} detail.
          throw invalidArgument(`validating reference: ${refError}`, { reference });
        }
        // An empty old object ID means "whatever it is now": a forced update.
        const oldOid = latin1(update.oldObjectId);
        if (oldOid !== "") {
          const reason = hexError(oldOid, oidLength);
          if (reason) throw invalidArgument(`validating old object ID: ${reason}`, { old_object_id: oldOid });
        }
        const newOid = latin1(update.newObjectId);
        const reason = hexError(newOid, oidLength);
        if (reason) throw invalidArgument(`validating new object ID: ${reason}`, { new_object_id: newOid });
        updater.update(update.reference, newOid, oldOid);
      }
      const next = await iterator.next();
      if (next.done) break;
      request = next.value;
    }

    try {
      await updater.commit();
    } catch (err) {
      throw err instanceof RefUpdateError ? updateReferencesError(err.failure, err) : err;
    }
    return create(UpdateReferencesResponseSchema);
  } catch (err) {
    throw asRpcError(err, "updating references");
  } finally {
    await updater?.close();
  }
}

function validateDeleteRefs(req: DeleteRefsRequest): void {
  if (req.exceptWithPrefix.length > 0 && req.refs.length > 0) {
    throw invalidArgument("ExceptWithPrefix and Refs are mutually exclusive");
  }
  // Deleting every ref is never what a client means.
  if (req.exceptWithPrefix.length === 0 && req.refs.length === 0)
    throw invalidArgument("empty ExceptWithPrefix and Refs");
  if (req.exceptWithPrefix.some((p) => p.length === 0)) throw invalidArgument("empty prefix for exclusion");
  if (req.refs.some((r) => r.length === 0)) throw invalidArgument("empty ref");
}

/** The refs to delete: the listed ones, or every ref outside the kept prefixes. */
async function refsToRemove(repo: RepoHandle, req: DeleteRefsRequest): Promise<Buffer[]> {
  if (req.refs.length > 0) return req.refs.map((r) => Buffer.from(r));
  const keep = req.exceptWithPrefix.map((p) => Buffer.from(p));
  const refs: Buffer[] = [];
  const proc = repo.spawn({ subcommand: "for-each-ref", flags: ["--format=%(refname)"] });
  for await (const line of gitRecords(proc)) {
    if (!keep.some((prefix) => line.subarray(0, prefix.length).equals(prefix))) refs.push(Buffer.from(line));
  }
  return refs;
}

export async function deleteRefs(
  deps: MutationDeps,
  req: DeleteRefsRequest,
  call: Call,
  signal?: AbortSignal,
): Promise<DeleteRefsResponse> {
  const repo = openRepo(deps, req.repository, signal);
  validateDeleteRefs(req);
  const refs = await refsToRemove(repo, req).catch((err: unknown) => {
    throw asRpcError(err, "listing references");
  });
  // Upstream validates names as revisions here (not as ref names) and adds a
  // DeleteRefsError{invalid_format} detail listing them.
  if (refs.some((ref) => revisionError(ref) !== null)) throw invalidArgument("invalid references");

  // Force deletions are invisible to the reference-transaction hook's voting (it skips
  // transactions of nothing but deletions), so DeleteRefs votes on its own: the SHA-1
  // of "<ref>\n" for every ref, as upstream does.
  const vote = voteHash(Buffer.concat(refs.flatMap((ref) => [ref, Buffer.from("\n")])));
  const castVote = async (phase: VotePhase, context: string) => {
    if (!deps.transactions) return;
    await voteOnCall(deps.transactions, call, vote, phase).catch((err: unknown) => {
      throw asRpcError(err, context);
    });
  };

  let updater: RefUpdater | undefined;
  try {
    const hooks = await deps.hooks.forCall(call, req.repository as Repository);
    updater = await RefUpdater.start(repo, { noDeref: true, ...hooks }).catch((err: unknown) => {
      throw asRpcError(err, "start reference transaction");
    });
    for (const ref of refs) updater.delete(ref);
    await castVote(PREPARING_PHASE, "preparing vote");
    try {
      await updater.prepare();
    } catch (err) {
      if (err instanceof RefUpdateError && err.failure?.kind === "locked") {
        throw aborted("cannot lock references", { reference: err.failure.reference });
      }
      throw asRpcError(err, "unable to prepare");
    }
    await castVote(VotePhase.PREPARED_PHASE, "prepared vote");
    await updater.commit().catch((err: unknown) => {
      throw asRpcError(err, "unable to commit");
    });
    await castVote(VotePhase.COMMITTED_PHASE, "committing vote");
    return create(DeleteRefsResponseSchema);
  } finally {
    await updater?.close();
  }
}
