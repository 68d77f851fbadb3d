// Server side of Gitaly's backchannel: a connection that began with the magic
// `backchannel` is a yamux session. The client's first stream carries its gRPC
// connection to us; streams we open go back to the client (sidechannels, and for
// Praefect a gRPC connection the other way). Each session gets a process-wide
// uint64 peer id, and the gRPC stream reports `backchannel-<id>` as its remote
// address so a handler can find its session from `call.getPeer()`.
import { EventEmitter } from "node:events";
import type { Socket } from "node:net";
import type { Duplex } from "node:stream";
import { YamuxSession, type YamuxStream } from "./yamux-session.js";

/** Upstream Gitaly's server-side yamux settings. */
export const BACKCHANNEL_STREAM_WINDOW = 16 * 1024 * 1024;

const PEER_PREFIX = "backchannel-";

const sessions = new Map<string, BackchannelSession>();
let lastPeerId = 0n;

/** The backchannel session a gRPC call arrived on, from `call.getPeer()`; undefined for plain connections. */
export function sessionForPeer(peer: string): BackchannelSession | undefined {
  return sessions.get(peer);
}

/** Open backchannel sessions in this process. */
export function backchannelSessionCount(): number {
  return sessions.size;
}

/** The peer string grpc-js reports for calls on backchannel session `id`. */
export function backchannelPeer(id: bigint): string {
  return `${PEER_PREFIX}${id}`;
}

export interface BackchannelSessionOptions {
  /** Receives the client's gRPC stream (its first stream); inject it into the gRPC server. */
  onGrpcConnection: (connection: Duplex) => void;
  /** How long the client gets to open its gRPC stream. */
  handshakeTimeoutMs: number;
}

/**
 * One backchannel connection. Emits 'close' once, when the session is gone (the
 * connection dropped, the gRPC stream closed, or close() was called).
 */
export class BackchannelSession extends EventEmitter {
  readonly id: bigint;
  /** What `call.getPeer()` returns for calls on this session. */
  readonly peer: string;
  /** Address of the underlying connection (undefined for unix sockets). */
  readonly remoteAddress: string | undefined;
  readonly remotePort: number | undefined;
  readonly yamux: YamuxSession;
  private grpcStream: YamuxStream | undefined;

  /** @internal Created by listenmux once the magic has been read. */
  constructor(socket: Socket, options: BackchannelSessionOptions) {
    super();
    lastPeerId += 1n;
    this.id = lastPeerId;
    this.peer = backchannelPeer(this.id);
    this.remoteAddress = socket.remoteAddress;
    this.remotePort = socket.remotePort;
    if (typeof socket.setNoDelay === "function") socket.setNoDelay(true);
    this.yamux = new YamuxSession(socket, {
      role: "server",
      maxStreamWindow: BACKCHANNEL_STREAM_WINDOW,
      onStream: (stream) => this.acceptStream(stream, socket, options.onGrpcConnection),
    });
    sessions.set(this.peer, this);
    const timer = setTimeout(() => {
      if (!this.grpcStream) this.close();
    }, options.handshakeTimeoutMs);
    timer.unref();
    this.yamux.once("close", () => {
      clearTimeout(timer);
      sessions.delete(this.peer);
      this.emit("close");
    });
  }

  get closed(): boolean {
    return this.yamux.closed;
  }

  /** Opens a stream to the client. Throws if the session is closed. */
  openStream(): YamuxStream {
    return this.yamux.open();
  }

  close(): void {
    this.yamux.close();
  }

  private acceptStream(stream: YamuxStream, socket: Socket, onGrpcConnection: (connection: Duplex) => void): void {
    // Upstream accepts exactly one stream from the client (its accept backlog is 1
    // and it never accepts again); later ones are refused.
    if (this.grpcStream) {
      stream.destroy();
      return;
    }
    this.grpcStream = stream;
    stream.remoteAddress = this.peer;
    stream.localAddress = socket.localAddress;
    stream.localPort = socket.localPort;
    // Without its gRPC connection the session has no purpose: upstream closes both together.
    stream.once("close", () => this.close());
    onGrpcConnection(stream);
    exposePeerToHttp2(stream, this.peer);
  }
}

/**
 * Node's http2 wraps a stream that is not a socket into an internal socket whose
 * remoteAddress is always undefined, so grpc-js's getPeer() would say "unknown".
 * During injection Node records the new session on the stream itself (under its
 * internal kBoundSession key, which Node 24 happens to spell "undefined"); the
 * session's public `socket` proxy forwards writes to that internal socket, where we
 * set the peer name it reports. We look the session up by what it is rather than by
 * the key, and the listenmux tests fail if this ever stops working.
 */
function exposePeerToHttp2(stream: Duplex, address: string): void {
  const fields = stream as unknown as Record<string | symbol, unknown>;
  for (const key of Reflect.ownKeys(stream)) {
    const value = fields[key] as { constructor?: { name?: string }; socket?: unknown } | null | undefined;
    if (value?.constructor?.name !== "ServerHttp2Session" || typeof value.socket !== "object") continue;
    (value.socket as Record<string, unknown>)._peername = { address, port: undefined };
    return;
  }
}
