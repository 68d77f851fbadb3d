// Every accepted connection (TCP, unix socket, or TLS once its handshake is done)
// starts here. Its first 11 bytes decide what it is: `backchannel` makes it a yamux
// session whose first stream is the gRPC connection; anything else is ordinary
// HTTP/2 gRPC, and the peeked bytes are put back before the connection is handed on.
//
// The caller counts connections by listener type before calling accept(), and feeds
// whatever onGrpcConnection receives to grpc-js:
//   server.createConnectionInjector(grpc.ServerCredentials.createInsecure()).injectConnection(conn)
import type { Socket } from "node:net";
import type { Duplex } from "node:stream";
import { BackchannelSession } from "./backchannel.js";
import { readPrefix } from "./stream-prefix.js";

export const BACKCHANNEL_MAGIC = "backchannel";
const MAGIC_LENGTH = 11;
/** grpc-go's default connection timeout: how long a client may take to identify itself. */
export const DEFAULT_HANDSHAKE_TIMEOUT_MS = 120_000;

export interface ListenmuxOptions {
  /**
   * Receives each gRPC connection: the socket itself for plain clients (the peeked
   * bytes are back in its read buffer, which Node's http2 consumes first), or the
   * client's first yamux stream for backchannel clients. Must take ownership
   * synchronously (connection injection does).
   */
  onGrpcConnection: (connection: Duplex) => void;
  /** Called for each new backchannel session (metrics, Praefect's reverse gRPC). */
  onBackchannel?: (session: BackchannelSession) => void;
  /** A connection was dropped before it was handed on: too short, silent, or failed. */
  onRejected?: (socket: Socket, reason: Error) => void;
  /** Deadline for the first 11 bytes, and for a backchannel client's first stream. */
  handshakeTimeoutMs?: number;
}

/** The part of a pino logger listenmux uses. */
export interface ListenmuxLogger {
  debug(obj: object, msg: string): void;
}

export interface Listenmux {
  /** Takes ownership of an accepted connection. Never throws. */
  accept(socket: Socket): void;
  /** Drops connections still being identified and closes the backchannel sessions it created. */
  close(): void;
}

export function createListenmux(options: ListenmuxOptions): Listenmux {
  const timeoutMs = options.handshakeTimeoutMs ?? DEFAULT_HANDSHAKE_TIMEOUT_MS;
  const pending = new Set<Socket>();
  const backchannels = new Set<BackchannelSession>();
  let closed = false;

  const reject = (socket: Socket, reason: Error) => {
    socket.destroy();
    options.onRejected?.(socket, reason);
  };

  const dispatch = (socket: Socket, peeked: Buffer) => {
    if (peeked.toString("latin1") !== BACKCHANNEL_MAGIC) {
      socket.unshift(peeked);
      options.onGrpcConnection(socket);
      return;
    }
    const session = new BackchannelSession(socket, {
      onGrpcConnection: options.onGrpcConnection,
      handshakeTimeoutMs: timeoutMs,
    });
    backchannels.add(session);
    session.once("close", () => backchannels.delete(session));
    options.onBackchannel?.(session);
  };

  return {
    accept(socket) {
      // Errors on a connection are the peer's business; they must not reach the
      // process as unhandled 'error' events, whoever owns the socket by then.
      socket.on("error", () => {});
      if (closed) {
        socket.destroy();
        return;
      }
      pending.add(socket);
      readPrefix(socket, MAGIC_LENGTH, timeoutMs).then(
        (peeked) => {
          pending.delete(socket);
          if (closed || socket.destroyed) {
            socket.destroy();
            return;
          }
          try {
            dispatch(socket, peeked);
          } catch (err) {
            reject(socket, err instanceof Error ? err : new Error(String(err)));
          }
        },
        (err: Error) => {
          pending.delete(socket);
          reject(socket, new Error(`listenmux: peek network stream: ${err.message}`, { cause: err }));
        },
      );
    },
    close() {
      closed = true;
      for (const socket of pending) socket.destroy();
      pending.clear();
      for (const session of backchannels) session.close();
      backchannels.clear();
    },
  };
}

/**
 * Takes ownership of one accepted connection, for callers that track connections
 * themselves. Rejected connections are logged at debug level.
 */
export function listenmux(socket: Socket, options: ListenmuxOptions & { logger?: ListenmuxLogger }): void {
  const { logger, ...rest } = options;
  createListenmux({
    ...rest,
    onRejected: (s, reason) => {
      logger?.debug({ err: reason, remoteAddress: s.remoteAddress }, "connection dropped before the handshake");
      rest.onRejected?.(s, reason);
    },
  }).accept(socket);
}
