// The hook program's gRPC client: one streaming call over HTTP/2 on a unix socket,
// written against node:http2 directly. git starts the hook program several times per
// push, and loading grpc-js would add most of a Node.js start-up time to each run.
// Messages are passed serialized; framing, metadata and status follow the gRPC
// HTTP/2 protocol, as in src/shared/grpc/http2-client.ts.
import { createHmac } from "node:crypto";
import * as http2 from "node:http2";
import { connect } from "node:net";

const HEADER_SIZE = 5;

/** The call failed with a gRPC status other than OK (or never got one). */
export class HookRpcError extends Error {
  readonly code: number;
  readonly details: string;

  constructor(code: number, details: string) {
    super(`rpc error: code = ${code} desc = ${details}`);
    this.name = "HookRpcError";
    this.code = code;
    this.details = details;
  }
}

/**
 * `Bearer v2.<hex HMAC-SHA256(token, ts)>.<ts>` for now: the same token as
 * shared/auth/v2-token.ts mints, without loading grpc-js for it.
 */
export function internalAuthorization(token: string, now: Date = new Date()): string {
  const message = String(Math.floor(now.getTime() / 1000));
  return `Bearer v2.${createHmac("sha256", token).update(message).digest("hex")}.${message}`;
}

function frame(message: Uint8Array): Buffer {
  const out = Buffer.allocUnsafe(HEADER_SIZE + message.length);
  out.writeUInt8(0, 0);
  out.writeUInt32BE(message.length, 1);
  out.set(message, HEADER_SIZE);
  return out;
}

/** Splits a byte stream into gRPC messages as the bytes arrive. */
export class MessageDeframer {
  #buffer: Buffer = Buffer.alloc(0);

  /** The messages completed by `chunk`; throws on a compressed message. */
  push(chunk: Buffer): Buffer[] {
    this.#buffer = this.#buffer.length === 0 ? chunk : Buffer.concat([this.#buffer, chunk]);
    const messages: Buffer[] = [];
    while (this.#buffer.length >= HEADER_SIZE) {
      if (this.#buffer.readUInt8(0) !== 0) throw new Error("compressed gRPC message received, none was negotiated");
      const length = this.#buffer.readUInt32BE(1);
      if (this.#buffer.length < HEADER_SIZE + length) break;
      messages.push(this.#buffer.subarray(HEADER_SIZE, HEADER_SIZE + length));
      this.#buffer = this.#buffer.subarray(HEADER_SIZE + length);
    }
    return messages;
  }

  /** Bytes of an unfinished message. */
  get pending(): number {
    return this.#buffer.length;
  }
}

function headerValue(value: string | string[] | undefined): string | undefined {
  return Array.isArray(value) ? value[value.length - 1] : value;
}

function decodeMessage(value: string | undefined): string {
  if (!value) return "";
  try {
    return decodeURIComponent(value);
  } catch {
    return value;
  }
}

export interface StreamingCallOptions {
  socketPath: string;
  /** "/gitaly.HookService/PreReceiveHook". */
  path: string;
  metadata: Record<string, string>;
  /** Serialized request messages; the call half-closes after the last. */
  requests: AsyncIterable<Uint8Array>;
  /** Each serialized response, in order; the next waits for the promise. */
  onResponse: (message: Buffer) => Promise<void> | void;
}

function sendAll(stream: http2.ClientHttp2Stream, requests: AsyncIterable<Uint8Array>): Promise<void> {
  return (async () => {
    for await (const message of requests) {
      if (stream.destroyed || stream.writableEnded) return;
      if (!stream.write(frame(message))) {
        await new Promise<void>((resolve) => {
          const done = () => {
            stream.off("drain", done);
            stream.off("close", done);
            resolve();
          };
          stream.on("drain", done);
          stream.on("close", done);
        });
      }
    }
    if (!stream.destroyed && !stream.writableEnded) stream.end();
  })();
}

/** Runs one call to completion; rejects with HookRpcError on a non-OK status. */
export function streamingCall(options: StreamingCallOptions): Promise<void> {
  return new Promise((resolve, reject) => {
    const session = http2.connect("http://localhost", { createConnection: () => connect(options.socketPath) });
    let settled = false;
    const finish = (err?: Error) => {
      if (settled) return;
      settled = true;
      session.close();
      if (!session.destroyed) session.destroy();
      if (err) reject(err);
      else resolve();
    };
    session.on("error", (err) => finish(new HookRpcError(14, `connection error: ${err.message}`)));

    const stream = session.request(
      {
        ...options.metadata,
        [http2.constants.HTTP2_HEADER_METHOD]: "POST",
        [http2.constants.HTTP2_HEADER_PATH]: options.path,
        [http2.constants.HTTP2_HEADER_CONTENT_TYPE]: "application/grpc",
        [http2.constants.HTTP2_HEADER_TE]: "trailers",
        "grpc-accept-encoding": "identity",
      },
      { endStream: false },
    );
    let headers: http2.IncomingHttpHeaders | undefined;
    let trailers: http2.IncomingHttpHeaders | undefined;
    const deframer = new MessageDeframer();
    let processing: Promise<void> = Promise.resolve();
    let failure: Error | undefined;

    stream.on("response", (h) => {
      headers = h;
    });
    stream.on("trailers", (t) => {
      trailers = t;
    });
    stream.on("data", (chunk: Buffer) => {
      let messages: Buffer[];
      try {
        messages = deframer.push(chunk);
      } catch (err) {
        failure ??= err as Error;
        stream.close(http2.constants.NGHTTP2_CANCEL);
        return;
      }
      if (messages.length === 0) return;
      // Output goes to git as fast as git takes it, no faster.
      stream.pause();
      processing = processing
        .then(async () => {
          for (const message of messages) await options.onResponse(message);
        })
        .catch((err: unknown) => {
          failure ??= err as Error;
        })
        .finally(() => stream.resume());
    });
    stream.on("error", (err) => {
      failure ??= new HookRpcError(14, err.message);
    });
    stream.on("close", () => {
      void processing.then(() => {
        if (failure) return finish(failure);
        const final = trailers ?? headers;
        const status = headerValue(final?.["grpc-status"]);
        if (status === undefined) {
          const httpStatus = headers ? Number(headers[":status"]) : 0;
          return finish(
            new HookRpcError(
              httpStatus === 0 ? 14 : 2,
              httpStatus === 0 ? "connection closed before the server responded" : `no status (HTTP ${httpStatus})`,
            ),
          );
        }
        const code = Number(status);
        if (code !== 0) return finish(new HookRpcError(code, decodeMessage(headerValue(final?.["grpc-message"]))));
        if (deframer.pending > 0) return finish(new HookRpcError(13, "truncated gRPC message"));
        finish();
      });
    });

    sendAll(stream, options.requests).catch((err: unknown) => {
      failure ??= err as Error;
      stream.close(http2.constants.NGHTTP2_CANCEL);
    });
  });
}
