// Votes in Praefect's reference transactions. A mutating RPC routed by Praefect carries
// `gitaly-reference-transaction` metadata; this node casts its votes (SHA-1 hashes of
// what it is about to change) with RefTransaction.VoteTransaction, sent back over the
// backchannel of the connection that carried the RPC: Praefect serves RefTransaction
// on streams this node opens in that yamux session. Upstream: internal/gitaly/transaction.
import { createHash } from "node:crypto";
import * as http2 from "node:http2";
import { create, fromBinary, toBinary } from "@bufbuild/protobuf";
import type * as grpc from "@grpc/grpc-js";
import {
  RefTransaction,
  StopTransactionRequestSchema,
  VoteTransactionRequest_Phase,
  VoteTransactionRequestSchema,
  VoteTransactionResponse_TransactionState,
  VoteTransactionResponseSchema,
} from "../../gen/transaction_pb.js";
import { unaryCall } from "../../shared/grpc/http2-client.js";
import { methodPath } from "../../shared/grpc/service.js";
import type { Logger } from "../../shared/logging.js";
import { parseTransactionMetadata, TRANSACTION_METADATA_KEY, type Transaction } from "../hooks/payload.js";
import { type BackchannelSession, backchannelPeer, sessionForPeer } from "../server/backchannel.js";

export { VoteTransactionRequest_Phase as VotePhase } from "../../gen/transaction_pb.js";
export type { Transaction } from "../hooks/payload.js";

/**
 * Upstream's transactionTimeout: high, because the primary may run access checks and
 * custom hooks before it votes while the secondaries wait.
 */
export const TRANSACTION_TIMEOUT_MS = 5 * 60 * 1000;

/** The vote for some data: its SHA-1. */
export function voteHash(data: Uint8Array | string): Buffer {
  return createHash("sha1").update(data).digest();
}

/** The transaction did not reach quorum (or timed out on Praefect's side). */
export class TransactionAbortedError extends Error {
  constructor() {
    super("transaction was aborted");
    this.name = "TransactionAbortedError";
  }
}

/** Praefect stopped the transaction gracefully, e.g. because the primary's hook rejected the change. */
export class TransactionStoppedError extends Error {
  constructor() {
    super("transaction was stopped");
    this.name = "TransactionStoppedError";
  }
}

/** Casts votes on, and stops, transactions. */
export interface TransactionManager {
  /** Resolves when the vote was committed; rejects with TransactionAbortedError/StoppedError otherwise. */
  vote(tx: Transaction, hash: Uint8Array, phase: VoteTransactionRequest_Phase): Promise<void>;
  stop(tx: Transaction): Promise<void>;
}

/**
 * The transaction a call takes part in: its `gitaly-reference-transaction` metadata,
 * plus the backchannel session it arrived on (where the votes go). Undefined when the
 * metadata is absent; throws when it is malformed.
 */
export function transactionFromCall(call: { metadata: grpc.Metadata; getPeer(): string }): Transaction | undefined {
  const value = call.metadata.get(TRANSACTION_METADATA_KEY)[0];
  if (value === undefined) return undefined;
  const tx = parseTransactionMetadata(typeof value === "string" ? value : value.toString("utf8"));
  const session = sessionForPeer(call.getPeer());
  return session ? { ...tx, backchannelId: session.id } : tx;
}

export interface BackchannelTransactionManagerOptions {
  logger?: Logger;
  /** Finds a backchannel session by id; the process-wide registry by default. */
  lookupSession?: (id: bigint) => BackchannelSession | undefined;
  timeoutMs?: number;
}

/** Votes over the backchannel sessions of this process, one HTTP/2 connection per session. */
export class BackchannelTransactionManager implements TransactionManager {
  readonly #connections = new WeakMap<BackchannelSession, http2.ClientHttp2Session>();
  readonly #lookupSession: (id: bigint) => BackchannelSession | undefined;
  readonly #logger: Logger | undefined;
  readonly #timeoutMs: number;

  constructor(options: BackchannelTransactionManagerOptions = {}) {
    this.#lookupSession = options.lookupSession ?? ((id) => sessionForPeer(backchannelPeer(id)));
    this.#logger = options.logger;
    this.#timeoutMs = options.timeoutMs ?? TRANSACTION_TIMEOUT_MS;
  }

  #connection(tx: Transaction): http2.ClientHttp2Session {
    const id = tx.backchannelId ?? 0n;
    const session = id === 0n ? undefined : this.#lookupSession(id);
    if (!session || session.closed) throw new Error(`get backchannel: backchannel with ID ${id} not found`);
    const existing = this.#connections.get(session);
    if (existing && !existing.closed && !existing.destroyed) return existing;
    // Praefect serves RefTransaction on every stream we open in its session; one
    // HTTP/2 connection per session carries all votes, like upstream's single ClientConn.
    const connection = http2.connect("http://localhost", { createConnection: () => session.openStream() });
    connection.on("error", (err) =>
      this.#logger?.debug({ err, backchannelId: String(id) }, "backchannel connection error"),
    );
    connection.once("close", () => {
      if (this.#connections.get(session) === connection) this.#connections.delete(session);
    });
    session.once("close", () => {
      if (!connection.destroyed) connection.destroy();
    });
    this.#connections.set(session, connection);
    return connection;
  }

  async vote(tx: Transaction, hash: Uint8Array, phase: VoteTransactionRequest_Phase): Promise<void> {
    const request = create(VoteTransactionRequestSchema, {
      transactionId: tx.id,
      node: tx.node,
      referenceUpdatesHash: hash,
      phase,
    });
    const fields = {
      "transaction.id": tx.id.toString(),
      "transaction.voter": tx.node,
      "transaction.hash": Buffer.from(hash).toString("hex"),
      "transaction.phase": VoteTransactionRequest_Phase[phase],
    };
    let response: Uint8Array;
    try {
      ({ response } = await unaryCall(
        this.#connection(tx),
        methodPath(RefTransaction.method.voteTransaction),
        toBinary(VoteTransactionRequestSchema, request),
        undefined,
        { deadlineMs: this.#timeoutMs },
      ));
    } catch (err) {
      this.#logger?.error({ ...fields, err }, "vote failed");
      throw err;
    }
    const { state } = fromBinary(VoteTransactionResponseSchema, response);
    switch (state) {
      case VoteTransactionResponse_TransactionState.COMMIT:
        return;
      case VoteTransactionResponse_TransactionState.ABORT:
        this.#logger?.error(fields, "transaction was aborted");
        throw new TransactionAbortedError();
      case VoteTransactionResponse_TransactionState.STOP:
        this.#logger?.error(fields, "transaction was stopped");
        throw new TransactionStoppedError();
      default:
        throw new Error("invalid transaction state");
    }
  }

  async stop(tx: Transaction): Promise<void> {
    try {
      await unaryCall(
        this.#connection(tx),
        methodPath(RefTransaction.method.stopTransaction),
        toBinary(StopTransactionRequestSchema, create(StopTransactionRequestSchema, { transactionId: tx.id })),
        undefined,
        { deadlineMs: this.#timeoutMs },
      );
    } catch (err) {
      this.#logger?.error(
        { "transaction.id": tx.id.toString(), "transaction.voter": tx.node, err },
        "stopping transaction failed",
      );
      throw err;
    }
  }
}

/** Votes on the call's transaction, if it takes part in one (upstream's VoteOnContext). */
export async function voteOnCall(
  manager: TransactionManager,
  call: { metadata: grpc.Metadata; getPeer(): string },
  hash: Uint8Array,
  phase: VoteTransactionRequest_Phase,
): Promise<void> {
  const tx = transactionFromCall(call);
  if (tx) await manager.vote(tx, hash, phase);
}
