// Server side of Gitaly's sidechannel: during an RPC that arrived over a backchannel
// session, open a yamux stream back to the client, announce `sidechannel` plus the
// 8-byte big-endian id the client sent in the `gitaly-sidechannel-id` metadata, and
// wait (5 s) for the client's `ok`. Afterwards the client sends pkt-lines ending
// with a flush (yamux has no half-close the client could use instead); we send raw
// bytes and close the stream when done.
import { type Readable, Transform, type TransformCallback, type Writable } from "node:stream";
import type * as grpc from "@grpc/grpc-js";
import { Code, RpcError } from "../../shared/grpc/errors.js";
import { PktLineError, PktLineParser } from "../git/pktline.js";
import { sessionForPeer } from "./backchannel.js";
import { readPrefix } from "./stream-prefix.js";
import type { YamuxStream } from "./yamux-session.js";

export const SIDECHANNEL_METADATA_KEY = "gitaly-sidechannel-id";
export const SIDECHANNEL_MAGIC = "sidechannel";
/** Upstream's deadline for the client's `ok`. */
export const SIDECHANNEL_TIMEOUT_MS = 5_000;

const INT64_MIN = -(2n ** 63n);
const INT64_MAX = 2n ** 63n - 1n;

/**
 * Failure to open a sidechannel. Like upstream's PostUploadPackWithSidechannel:
 * failures of the stream itself are retryable and map to Unavailable (clients
 * retry those); a missing id or a call that did not come over a backchannel maps to
 * Internal. `reason` is upstream's own error text ("sidechannel: ..."), for RPCs
 * that word the status differently (SSHUploadPackWithSidechannel: Internal,
 * "opennig sidechannel: <reason>").
 */
export class SidechannelError extends RpcError {
  readonly retryable: boolean;
  readonly reason: string;

  constructor(reason: string, retryable: boolean, cause?: unknown) {
    super(retryable ? Code.UNAVAILABLE : Code.INTERNAL, `open sidechannel: ${reason}`, { cause });
    this.name = "SidechannelError";
    this.retryable = retryable;
    this.reason = reason;
  }
}

/** The id from the metadata value (a decimal int64), or undefined if it is not one. */
export function parseSidechannelId(value: string): bigint | undefined {
  if (!/^-?\d{1,19}$/.test(value)) return undefined;
  const id = BigInt(value);
  return id >= INT64_MIN && id <= INT64_MAX ? id : undefined;
}

/** `sidechannel` followed by the id as a big-endian int64: what the server writes first. */
export function encodeSidechannelHandshake(id: bigint): Buffer {
  const buf = Buffer.alloc(SIDECHANNEL_MAGIC.length + 8);
  buf.write(SIDECHANNEL_MAGIC, 0, "latin1");
  buf.writeBigInt64BE(id, SIDECHANNEL_MAGIC.length);
  return buf;
}

/** Client→server framing: pkt-line payloads until the flush packet, which ends the stream. */
class SidechannelReader extends Transform {
  private readonly parser = new PktLineParser();
  flushed = false;

  override _transform(chunk: Buffer, _encoding: BufferEncoding, callback: TransformCallback): void {
    if (this.flushed) {
      callback();
      return;
    }
    try {
      this.parser.feed(chunk);
      for (let p = this.parser.next(); p; p = this.parser.next()) {
        if (p.kind === "flush") {
          this.flushed = true;
          this.push(null);
          break;
        }
        if (p.kind !== "data") throw new Error(`sidechannel: invalid header ${p.kind === "delim" ? 1 : 2}`);
        if (p.payload.length > 0) this.push(p.payload);
      }
      callback();
    } catch (err) {
      callback(err instanceof PktLineError ? new Error(`sidechannel: ${err.message}`) : (err as Error));
    }
  }

  override _flush(callback: TransformCallback): void {
    // Upstream rejects a stream that ends without the flush: it cannot tell a
    // complete request from a truncated one.
    callback(this.flushed ? null : new Error("sidechannel: unexpected EOF"));
  }
}

/** An open sidechannel, server side. */
export class Sidechannel {
  readonly id: bigint;
  /** Client→server data, pkt-line framing removed; ends at the client's flush packet. */
  readonly readable: Readable;
  /** Server→client data, sent as is. */
  readonly writable: Writable;
  private readonly stream: YamuxStream;

  /** @internal Created by openSidechannel. */
  constructor(id: bigint, stream: YamuxStream) {
    this.id = id;
    this.stream = stream;
    this.writable = stream;
    const reader = new SidechannelReader();
    // The RPC may never read the request; a malformed one must not crash the process.
    reader.on("error", () => {});
    stream.pipe(reader);
    stream.once("close", () => {
      if (!reader.flushed && !reader.destroyed) {
        reader.destroy(stream.errored ?? new Error("sidechannel: unexpected EOF"));
      }
    });
    this.readable = reader;
  }

  /** Finishes the server→client data and releases the stream. */
  async close(): Promise<void> {
    if (!this.stream.writableEnded && !this.stream.destroyed) {
      await new Promise<void>((resolve) => this.stream.end(() => resolve()));
    }
    this.stream.destroy();
  }

  /** Aborts the sidechannel (the client sees a reset). */
  destroy(err?: Error): void {
    this.stream.destroy(err);
  }
}

/**
 * Opens sidechannel `id` to the client of the backchannel session that `peer`
 * (grpc-js `call.getPeer()`) names. Throws SidechannelError.
 */
export async function openSidechannel(
  peer: string,
  id: bigint | string,
  { timeoutMs = SIDECHANNEL_TIMEOUT_MS }: { timeoutMs?: number } = {},
): Promise<Sidechannel> {
  const sidechannelId = typeof id === "bigint" ? id : parseSidechannelId(id);
  if (sidechannelId === undefined) {
    throw new SidechannelError(`sidechannel: invalid sidechannel-id ${JSON.stringify(id)}`, false);
  }
  const session = sessionForPeer(peer);
  if (!session)
    throw new SidechannelError("sidechannel: fail to extract mux session: non-multiplexed connection", false);
  let stream: YamuxStream;
  try {
    stream = session.openStream();
  } catch (err) {
    throw new SidechannelError(`sidechannel: open stream: ${(err as Error).message}`, true, err);
  }
  stream.write(encodeSidechannelHandshake(sidechannelId));
  let reply: Buffer;
  try {
    reply = await readPrefix(stream, 2, timeoutMs);
  } catch (err) {
    stream.destroy();
    throw new SidechannelError(`sidechannel: receive confirmation: ${(err as Error).message}`, true, err);
  }
  const ok = reply.toString("latin1");
  if (ok !== "ok") {
    stream.destroy();
    throw new SidechannelError(`sidechannel: expected ok, got ${JSON.stringify(ok)}`, false);
  }
  return new Sidechannel(sidechannelId, stream);
}

/** Opens the sidechannel a gRPC call asked for with its `gitaly-sidechannel-id` metadata. */
export function sidechannelFromCall(
  call: { getPeer(): string; metadata: grpc.Metadata },
  options: { timeoutMs?: number } = {},
): Promise<Sidechannel> {
  const values = call.metadata.get(SIDECHANNEL_METADATA_KEY);
  const last = values[values.length - 1];
  if (last === undefined) {
    return Promise.reject(new SidechannelError("sidechannel: sidechannel-id not found in incoming metadata", false));
  }
  return openSidechannel(call.getPeer(), String(last), options);
}
