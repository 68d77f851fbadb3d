// Relays a call that carries a sidechannel (PostUploadPackWithSidechannel,
// SSHUploadPackWithSidechannel): the node call goes over Praefect's backchannel connection to
// the node with a sidechannel Praefect registers there, and once the node opens it, Praefect
// opens the client's sidechannel and copies bytes both ways (client→node re-framed as
// pkt-lines ending with the flush, node→client raw). As upstream's sidechannel proxy does, the
// client's sidechannel is only opened when the node opened its own, so a call the node rejects
// leaves the client's sidechannel untouched.
import { finished, type Readable, type Writable } from "node:stream";
import * as grpc from "@grpc/grpc-js";
import { sidechannelFromCall } from "../../gitaly/server/sidechannel.js";
import { YamuxStream } from "../../gitaly/server/yamux-session.js";
import { AUTHORIZATION_KEY, bearerToken } from "../../shared/auth/v2-token.js";
import type { BackchannelConnection, ClientSidechannel } from "../../shared/grpc/backchannel-client.js";
import type { Logger } from "../../shared/logging.js";
import type { NodeOutcome } from "../router/coordinator.js";
import { type RelayTarget, relayedResponseMetadata } from "./node-calls.js";

export const SIDECHANNEL_METADATA_KEY = "gitaly-sidechannel-id";

/** Whether the client asked for a sidechannel on this call. */
export function hasSidechannel(metadata: grpc.Metadata): boolean {
  return metadata.get(SIDECHANNEL_METADATA_KEY).length > 0;
}

/**
 * Copies `from` into `to` (left open) until `from` ends. Rejects if either side fails or
 * `to` closes first. Neither stream is destroyed here: the sidechannels' owners close them
 * (with FIN, not a reset). Two yamux streams are spliced: the node's Data frames leave as
 * the client's in the same turn, without the stream machinery, which is most of a relay's
 * CPU time; anything else is piped chunk by chunk, `from` pausing while `to` is above its
 * high-water mark.
 */
function relayUntilEnd(from: Readable, to: Writable): Promise<void> {
  if (from instanceof YamuxStream && to instanceof YamuxStream) return from.spliceTo(to);
  return new Promise((resolve, reject) => {
    const settle = (err?: Error | null) => {
      stopFrom();
      stopTo();
      from.unpipe(to);
      if (err) reject(err);
      else resolve();
    };
    const stopFrom = finished(from, { writable: false }, (err) => settle(err));
    const stopTo = finished(to, { readable: false }, (err) =>
      settle(err ?? new Error("sidechannel: client side finished before the relay")),
    );
    from.pipe(to, { end: false });
  });
}

/** Copies between the client's sidechannel (of `call`) and the node's (`upstream`). */
async function copySidechannels(
  call: { getPeer(): string; metadata: grpc.Metadata },
  upstream: ClientSidechannel,
): Promise<void> {
  const downstream = await sidechannelFromCall(call);
  try {
    const toNode = (async () => {
      for await (const chunk of downstream.readable) await upstream.write(chunk as Buffer);
      await upstream.closeWrite();
    })();
    // Upload-pack may answer and close before reading everything; the rest is moot then.
    toNode.catch(() => undefined);
    // The pack is the bulk of the bytes: relayed as the node's frames arrive, without
    // copies; while the client lags, the node's stream (and so its window) waits.
    const toClient = relayUntilEnd(upstream.readable, downstream.writable);
    toClient.catch(() => undefined);
    // Done when the node closed its side; a failure sending the request fails the relay earlier.
    await Promise.race([toClient, toNode.then(() => toClient)]);
    await downstream.close();
  } catch (err) {
    downstream.destroy(err instanceof Error ? err : new Error(String(err)));
    throw err;
  }
}

function deadlineMs(call: grpc.ServerDuplexStream<Buffer, Buffer>): number | undefined {
  const deadline = call.getDeadline();
  const at = deadline instanceof Date ? deadline.getTime() : deadline;
  return Number.isFinite(at) ? Math.max(0, at - Date.now()) : undefined;
}

function errorStatus(err: unknown): grpc.StatusObject {
  const e = err as Partial<grpc.ServiceError>;
  if (typeof e?.code === "number" && typeof e.details === "string") {
    return { code: e.code, details: e.details, metadata: relayedResponseMetadata(e.metadata) };
  }
  return {
    code: grpc.status.INTERNAL,
    details: err instanceof Error ? err.message : String(err),
    metadata: new grpc.Metadata(),
  };
}

/**
 * Runs the unary call on the node over its backchannel with a relayed sidechannel; on success
 * writes the node's headers and response to `call`. The final status is left to the caller.
 */
export async function relayWithSidechannel(
  call: grpc.ServerDuplexStream<Buffer, Buffer>,
  path: string,
  target: RelayTarget,
  metadata: grpc.Metadata,
  logger: Logger,
): Promise<NodeOutcome> {
  const storage = target.node.storage;
  let conn: BackchannelConnection;
  try {
    conn = await target.node.backchannel();
  } catch (err) {
    return {
      storage,
      status: {
        code: grpc.status.UNAVAILABLE,
        details: `dialling backchannel to ${storage}: ${(err as Error).message}`,
        metadata: new grpc.Metadata(),
      },
    };
  }
  let started = false;
  const waiter = conn.registerSidechannel(async (upstream) => {
    started = true;
    await copySidechannels(call, upstream);
  });
  const md = metadata.clone();
  md.set(SIDECHANNEL_METADATA_KEY, waiter.id.toString());
  if (target.node.token !== "") md.set(AUTHORIZATION_KEY, bearerToken(target.node.token));

  let result: Awaited<ReturnType<BackchannelConnection["unaryRaw"]>>;
  try {
    const ms = deadlineMs(call);
    result = await conn.unaryRaw(path, target.message, {
      metadata: md,
      ...(ms === undefined ? {} : { deadlineMs: ms }),
    });
  } catch (err) {
    // The node's error wins; a sidechannel failure behind it is only worth a log line.
    await waiter.close().catch((sidechannelErr: unknown) => {
      if (started) logger.warn({ err: sidechannelErr, storage }, "failed proxying callback on sidechannel");
    });
    return { storage, status: errorStatus(err) };
  }
  try {
    await waiter.close();
  } catch (err) {
    if (started) {
      return {
        storage,
        status: {
          code: grpc.status.INTERNAL,
          details: `sidechannel: proxy callback: ${(err as Error).message}`,
          metadata: new grpc.Metadata(),
        },
      };
    }
  }
  if (!call.cancelled) {
    call.sendMetadata(relayedResponseMetadata(result.headers));
    call.write(Buffer.from(result.response.buffer, result.response.byteOffset, result.response.byteLength));
  }
  return {
    storage,
    status: { code: grpc.status.OK, details: "OK", metadata: relayedResponseMetadata(result.trailers) },
  };
}
