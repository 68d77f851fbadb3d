// Byte-level relay between a client's call and the node calls it was routed to. Every method
// is served and called as a bidi stream of undecoded messages (on the wire a unary call is a
// stream with one message each way), the way upstream's grpc-proxy does: messages are never
// decoded here. Back-pressure holds in both directions: a client sending faster than the nodes
// accept is paused, and so is the primary's response stream while the client is slow to read.
import * as grpc from "@grpc/grpc-js";
import type { GitalyNode } from "../nodes/types.js";
import type { NodeOutcome } from "../router/coordinator.js";

const identity = (b: Buffer): Buffer => b;

/** Request headers that belong to the client's connection, not to the node call. */
const CONNECTION_REQUEST_KEYS = ["authorization", "user-agent", "host", "te", "content-type", "grpc-timeout"];
/** Response headers the server's own HTTP/2 layer sets again. */
const CONNECTION_RESPONSE_KEYS = [
  "content-type",
  "date",
  "grpc-encoding",
  "grpc-accept-encoding",
  "grpc-status",
  "grpc-message",
];

/**
 * The metadata a node call carries: the client's, without its credentials (the node channel
 * signs with the node's token), plus `virtual_storage` and the plan's extra keys.
 */
export function nodeRequestMetadata(
  incoming: grpc.Metadata,
  virtualStorage: string,
  extra: Readonly<Record<string, string>> = {},
): grpc.Metadata {
  const md = incoming.clone();
  for (const key of CONNECTION_REQUEST_KEYS) md.remove(key);
  md.set("virtual_storage", virtualStorage);
  for (const [key, value] of Object.entries(extra)) md.set(key, value);
  return md;
}

/** A node's response headers or trailers as the client should get them. */
export function relayedResponseMetadata(md: grpc.Metadata | null | undefined): grpc.Metadata {
  const out = md ? md.clone() : new grpc.Metadata();
  for (const key of CONNECTION_RESPONSE_KEYS) out.remove(key);
  return out;
}

/** Where a node's responses go: the client for the primary, nowhere for the others. */
interface ResponseSink {
  headers(md: grpc.Metadata): void;
  /** False when the client is not keeping up; `whenWritable` then says when to go on. */
  write(message: Buffer): boolean;
  whenWritable(): Promise<void>;
}

/** One call to a node, started with the rewritten first message. */
class NodeCall {
  readonly storage: string;
  readonly outcome: Promise<NodeOutcome>;
  private readonly call: grpc.ClientDuplexStream<Buffer, Buffer>;
  private status: grpc.StatusObject | undefined;
  private readEnded = false;
  private abandoned = false;
  private settle: () => void = () => undefined;

  constructor(
    node: GitalyNode,
    path: string,
    metadata: grpc.Metadata,
    deadline: grpc.Deadline,
    firstMessage: Uint8Array,
    sink: ResponseSink | undefined,
  ) {
    this.storage = node.storage;
    this.outcome = new Promise((resolve) => {
      this.settle = () => {
        if (this.status && (this.readEnded || this.abandoned)) {
          resolve({ storage: this.storage, status: this.status });
        }
      };
    });
    this.call = node.channel.makeBidiStreamRequest(path, identity, identity, metadata, { deadline });
    // The final status arrives through 'status'; grpc-js also emits it as 'error'.
    this.call.on("error", () => undefined);
    this.call.on("status", (status: grpc.StatusObject) => {
      this.status = status;
      this.settle();
    });
    this.call.on("end", () => {
      this.readEnded = true;
      this.settle();
    });
    if (sink) {
      this.call.on("metadata", (md: grpc.Metadata) => sink.headers(md));
      this.call.on("data", (message: Buffer) => {
        if (sink.write(message)) return;
        this.call.pause();
        void sink.whenWritable().then(() => this.call.resume());
      });
    } else {
      // Secondaries' responses are read only to let their calls finish.
      this.call.on("data", () => undefined);
    }
    this.call.write(Buffer.from(firstMessage.buffer, firstMessage.byteOffset, firstMessage.byteLength));
  }

  get finished(): boolean {
    return this.status !== undefined;
  }

  /** Forwards one client message; false when the node call is not keeping up. */
  write(message: Buffer): boolean {
    if (this.finished) return true;
    return this.call.write(message);
  }

  /** Resolves once the node call takes more messages (or has ended, so it never will). */
  writable(): Promise<void> {
    if (this.finished || !this.call.writableNeedDrain) return Promise.resolve();
    return new Promise((resolve) => {
      const done = () => {
        this.call.off("drain", done);
        this.call.off("status", done);
        resolve();
      };
      this.call.on("drain", done);
      this.call.on("status", done);
    });
  }

  /** The client finished sending. */
  end(): void {
    if (!this.finished && !this.call.writableEnded) this.call.end();
  }

  /** Cancels the call; its outcome no longer waits for unread responses. */
  cancel(): void {
    this.abandoned = true;
    this.call.cancel();
    this.settle();
  }
}

/** Resolves when `call` takes more writes, or can no longer be written at all. */
function whenServerWritable(call: grpc.ServerDuplexStream<Buffer, Buffer>): Promise<void> {
  if (!call.writableNeedDrain || call.destroyed) return Promise.resolve();
  return new Promise((resolve) => {
    const done = () => {
      call.off("drain", done);
      call.off("close", done);
      call.off("cancelled", done);
      resolve();
    };
    call.on("drain", done);
    call.on("close", done);
    call.on("cancelled", done);
  });
}

/**
 * Reads the client's first message; null when the client ended without sending one. The
 * stream is left paused, with any further messages buffered.
 */
export function readFirstMessage(call: grpc.ServerDuplexStream<Buffer, Buffer>): Promise<Buffer | null> {
  return new Promise((resolve, reject) => {
    const cleanup = () => {
      call.off("data", onData);
      call.off("end", onEnd);
      call.off("cancelled", onCancel);
    };
    const onData = (message: Buffer) => {
      cleanup();
      call.pause();
      resolve(message);
    };
    const onEnd = () => {
      cleanup();
      resolve(null);
    };
    const onCancel = () => {
      cleanup();
      reject(Object.assign(new Error("cancelled by the client"), { code: grpc.status.CANCELLED }));
    };
    call.on("data", onData);
    call.once("end", onEnd);
    call.once("cancelled", onCancel);
  });
}

export interface RelayTarget {
  node: GitalyNode;
  message: Uint8Array;
}

/**
 * Relays `call` to the targets: the first message each got, then every further client message
 * to all of them; the first target's headers and responses go back to the client. Resolves with
 * every node call's outcome, in target order, once all have ended. The client's final status is
 * left to the caller.
 */
export async function relayToNodes(
  call: grpc.ServerDuplexStream<Buffer, Buffer>,
  path: string,
  targets: readonly RelayTarget[],
  metadata: grpc.Metadata,
): Promise<NodeOutcome[]> {
  const deadline = call.getDeadline();
  const primarySink: ResponseSink = {
    headers: (md) => {
      if (!call.cancelled) call.sendMetadata(relayedResponseMetadata(md));
    },
    write: (message) => (call.cancelled || call.destroyed ? true : call.write(message)),
    whenWritable: () => whenServerWritable(call),
  };
  const nodeCalls = targets.map(
    (target, i) =>
      new NodeCall(target.node, path, metadata.clone(), deadline, target.message, i === 0 ? primarySink : undefined),
  );

  const onCancelled = () => {
    for (const c of nodeCalls) c.cancel();
  };
  call.once("cancelled", onCancelled);
  if (call.cancelled) onCancelled();

  const onMessage = (message: Buffer) => {
    let blocked = false;
    for (const c of nodeCalls) if (!c.write(message)) blocked = true;
    if (!blocked) return;
    call.pause();
    void Promise.all(nodeCalls.map((c) => c.writable())).then(() => call.resume());
  };
  const onEnd = () => {
    for (const c of nodeCalls) c.end();
  };
  call.on("data", onMessage);
  call.once("end", onEnd);
  call.resume();

  // Every node call runs to its end, even when another failed: maintenance is best effort on each.
  try {
    return await Promise.all(nodeCalls.map((c) => c.outcome));
  } finally {
    call.off("data", onMessage);
    call.off("end", onEnd);
    call.off("cancelled", onCancelled);
  }
}
