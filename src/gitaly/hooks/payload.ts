// GITALY_HOOKS_PAYLOAD: what a git command started by this node tells the hooks it runs
// (the hook program, then HookService). Base64 of JSON with upstream's field names
// (internal/git/gitcmd/hooks_payload.go), the repository embedded as a protojson
// string, so the format is the same as upstream Gitaly's.
//
// Imported by the hook program: keep it free of gRPC and server modules.
import { create, fromJsonString, toJsonString } from "@bufbuild/protobuf";
import { type Repository, RepositorySchema } from "../../gen/shared_pb.js";

export const HOOKS_PAYLOAD_ENV = "GITALY_HOOKS_PAYLOAD";
/** gRPC metadata naming the Praefect transaction a mutating call takes part in. */
export const TRANSACTION_METADATA_KEY = "gitaly-reference-transaction";

/** Bits of `requested_hooks`, as upstream numbers them. */
export const Hook = {
  ReferenceTransaction: 1,
  Update: 2,
  PreReceive: 4,
  PostReceive: 8,
  PackObjects: 16,
  ProcReceive: 32,
} as const;
export type HookBit = (typeof Hook)[keyof typeof Hook];

/** Upstream's AllHooks: what a payload without requested_hooks asks for. */
export const ALL_HOOKS =
  Hook.ReferenceTransaction | Hook.Update | Hook.PreReceive | Hook.PostReceive | Hook.PackObjects;
/** The hooks of a push (git receive-pack) or an emulation of one. */
export const RECEIVE_PACK_HOOKS = Hook.ReferenceTransaction | Hook.Update | Hook.PreReceive | Hook.PostReceive;

/** A Praefect reference transaction this node votes in. */
export interface Transaction {
  /**
   * The backchannel session the transaction's RPC arrived on, which is where votes go.
   * Filled in by this node from the call's peer; absent for calls on plain connections.
   */
  backchannelId?: bigint;
  id: bigint;
  /** The name this node votes as (its storage name in Praefect's configuration). */
  node: string;
  primary: boolean;
}

/** Who caused the hooks to run (receive-pack only). */
export interface UserDetails {
  username: string;
  /** GitLab's gl_id: `user-<n>`, `key-<n>` or `username-<name>`. */
  userId: string;
  /** "web", "ssh" or "http". */
  protocol: string;
  remoteIp: string;
}

export interface HooksPayload {
  requestedHooks: number;
  objectFormat: string;
  runtimeDir: string;
  /** Path of the unix socket serving HookService. */
  internalSocket: string;
  internalSocketToken: string;
  transaction?: Transaction;
  userDetails?: UserDetails;
  repository: Repository;
}

export class HooksPayloadNotFoundError extends Error {
  constructor() {
    super("no hooks payload found in environment");
    this.name = "HooksPayloadNotFoundError";
  }
}

type RawJsonFn = (text: string) => unknown;
type SourceReviver = (this: unknown, key: string, value: unknown, context?: { source?: string }) => unknown;

// Transaction ids are uint64: written and read as exact integers, never through a double.
const rawJson = (JSON as unknown as { rawJSON: RawJsonFn }).rawJSON;
const parseJson = JSON.parse as (text: string, reviver: SourceReviver) => unknown;

const STD_BASE64 = /^(?:[A-Za-z0-9+/]{4})*(?:[A-Za-z0-9+/]{2}==|[A-Za-z0-9+/]{3}=)?$/;
const UINT64_MAX = 2n ** 64n - 1n;

/** Go's base64.StdEncoding.DecodeString: padded, no whitespace. */
function decodeStdBase64(text: string, what: string): string {
  if (!STD_BASE64.test(text)) throw new Error(`${what}: illegal base64 data`);
  return Buffer.from(text, "base64").toString("utf8");
}

/** JSON.parse that keeps the integer fields named in `exact` as bigints. */
function parseWithExactIntegers(text: string, exact: ReadonlySet<string>): unknown {
  return parseJson(text, (key, value, context) => {
    if (!exact.has(key) || typeof value !== "number") return value;
    const source = context?.source ?? String(value);
    if (!/^[0-9]+$/.test(source)) throw new Error(`json: cannot unmarshal number ${source} into uint64 field ${key}`);
    const n = BigInt(source);
    if (n > UINT64_MAX) throw new Error(`json: cannot unmarshal number ${source} into uint64 field ${key}`);
    return n;
  });
}

function asRecord(value: unknown, what: string): Record<string, unknown> {
  if (typeof value !== "object" || value === null || Array.isArray(value)) throw new Error(`${what}: not an object`);
  return value as Record<string, unknown>;
}

function stringField(record: Record<string, unknown>, key: string): string {
  const v = record[key];
  if (v === undefined || v === null) return "";
  if (typeof v !== "string") throw new Error(`json: cannot unmarshal ${typeof v} into string field ${key}`);
  return v;
}

function boolField(record: Record<string, unknown>, key: string): boolean {
  const v = record[key];
  if (v === undefined || v === null) return false;
  if (typeof v !== "boolean") throw new Error(`json: cannot unmarshal ${typeof v} into bool field ${key}`);
  return v;
}

function uintField(record: Record<string, unknown>, key: string): bigint {
  const v = record[key];
  if (v === undefined || v === null) return 0n;
  if (typeof v !== "bigint") throw new Error(`json: cannot unmarshal ${typeof v} into uint64 field ${key}`);
  return v;
}

const TRANSACTION_INTEGERS = new Set(["id", "backchannel_id"]);

function transactionFromJson(value: unknown): Transaction {
  const record = asRecord(value, "transaction");
  const backchannelId = uintField(record, "backchannel_id");
  return {
    ...(backchannelId !== 0n ? { backchannelId } : {}),
    id: uintField(record, "id"),
    node: stringField(record, "node"),
    primary: boolField(record, "primary"),
  };
}

function transactionToJson(tx: Transaction): Record<string, unknown> {
  return {
    ...(tx.backchannelId ? { backchannel_id: rawJson(tx.backchannelId.toString()) } : {}),
    id: rawJson(tx.id.toString()),
    node: tx.node,
    primary: tx.primary,
  };
}

/**
 * The transaction named by `gitaly-reference-transaction` metadata: std-base64 JSON
 * {"id":N,"node":"<storage>","primary":bool}. Throws on a malformed value.
 */
export function parseTransactionMetadata(value: string): Transaction {
  const json = decodeStdBase64(value, "from serialized");
  return transactionFromJson(parseWithExactIntegers(json, TRANSACTION_INTEGERS));
}

/** The `gitaly-reference-transaction` metadata value for a transaction (what Praefect sends). */
export function serializeTransactionMetadata(tx: Omit<Transaction, "backchannelId">): string {
  const json = JSON.stringify({ id: rawJson(tx.id.toString()), node: tx.node, primary: tx.primary });
  return Buffer.from(json, "utf8").toString("base64");
}

/** The payload as the value of GITALY_HOOKS_PAYLOAD. */
export function encodeHooksPayload(payload: HooksPayload): string {
  const user = payload.userDetails;
  const json = JSON.stringify({
    requested_hooks: payload.requestedHooks,
    object_format: payload.objectFormat,
    runtime_dir: payload.runtimeDir,
    internal_socket: payload.internalSocket,
    internal_socket_token: payload.internalSocketToken,
    transaction: payload.transaction ? transactionToJson(payload.transaction) : null,
    user_details: user
      ? { username: user.username, userid: user.userId, protocol: user.protocol, remote_ip: user.remoteIp }
      : null,
    repository: toJsonString(RepositorySchema, payload.repository),
  });
  return Buffer.from(json, "utf8").toString("base64");
}

/** Decodes a GITALY_HOOKS_PAYLOAD value. A payload without requested_hooks requests all hooks. */
export function decodeHooksPayload(encoded: string): HooksPayload {
  const json = decodeStdBase64(encoded, "decoding hooks payload");
  const record = asRecord(parseWithExactIntegers(json, TRANSACTION_INTEGERS), "hooks payload");
  const requested = record.requested_hooks ?? 0;
  if (typeof requested !== "number" || !Number.isInteger(requested) || requested < 0) {
    throw new Error("json: cannot unmarshal requested_hooks");
  }
  const userRecord = record.user_details;
  const repositoryJson = stringField(record, "repository");
  const repository =
    repositoryJson === ""
      ? create(RepositorySchema)
      : fromJsonString(RepositorySchema, repositoryJson, { ignoreUnknownFields: true });
  const payload: HooksPayload = {
    requestedHooks: requested === 0 ? ALL_HOOKS : requested,
    objectFormat: stringField(record, "object_format"),
    runtimeDir: stringField(record, "runtime_dir"),
    internalSocket: stringField(record, "internal_socket"),
    internalSocketToken: stringField(record, "internal_socket_token"),
    repository,
  };
  if (record.transaction !== undefined && record.transaction !== null) {
    payload.transaction = transactionFromJson(record.transaction);
  }
  if (userRecord !== undefined && userRecord !== null) {
    const user = asRecord(userRecord, "user_details");
    payload.userDetails = {
      username: stringField(user, "username"),
      userId: stringField(user, "userid"),
      protocol: stringField(user, "protocol"),
      remoteIp: stringField(user, "remote_ip"),
    };
  }
  return payload;
}

/** The value of `name` in a `KEY=value` list (the first one, like upstream). */
export function lookupEnv(env: readonly string[], name: string): string | undefined {
  const prefix = `${name}=`;
  return env.find((entry) => entry.startsWith(prefix))?.slice(prefix.length);
}

/** The payload in an environment (`KEY=value` list); throws HooksPayloadNotFoundError without one. */
export function hooksPayloadFromEnv(env: readonly string[]): HooksPayload {
  const encoded = lookupEnv(env, HOOKS_PAYLOAD_ENV);
  if (encoded === undefined) throw new HooksPayloadNotFoundError();
  return decodeHooksPayload(encoded);
}

export function isHookRequested(payload: HooksPayload, hook: HookBit): boolean {
  return (payload.requestedHooks & hook) !== 0;
}
