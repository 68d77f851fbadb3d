// Client side of Gitaly's backchannel: dial, send the magic `backchannel`, run a
// yamux client session, and speak gRPC over its first stream. Streams the server
// opens back to us are told apart by their first bytes: `sidechannel` + id hands the
// stream to the handler registered under that id; anything else (Praefect's gRPC
// the other way) goes to `onServerStream`, with its bytes intact.
//
// Sidechannel usage (one handler per call; the id travels as metadata):
//   const { response, sidechannel } = await conn.withSidechannel(
//     async (sc) => { await sc.write(stdin); await sc.closeWrite(); return sc.readAll(); },
//     (metadata) => conn.unary(SmartHTTPService.method.postUploadPackWithSidechannel, req, { metadata }),
//   );
import * as http2 from "node:http2";
import { isIP, type Socket, connect as tcpConnect } from "node:net";
import type { Readable, Writable } from "node:stream";
import { connect as tlsConnect } from "node:tls";
import type { DescMethod, MessageInitShape, MessageShape } from "@bufbuild/protobuf";
import { create, fromBinary, toBinary } from "@bufbuild/protobuf";
import * as grpc from "@grpc/grpc-js";
import { encodePktLines, flushPkt } from "../../gitaly/git/pktline.js";
import {
  SIDECHANNEL_MAGIC,
  SIDECHANNEL_METADATA_KEY,
  SIDECHANNEL_TIMEOUT_MS,
} from "../../gitaly/server/sidechannel.js";
import { readPrefix } from "../../gitaly/server/stream-prefix.js";
import { YamuxSession, type YamuxStream } from "../../gitaly/server/yamux-session.js";
import { type CallMetadata, type UnaryCallResult, unaryCall } from "./http2-client.js";
import { methodPath } from "./service.js";

const BACKCHANNEL_MAGIC = "backchannel";
const DEFAULT_CONNECT_TIMEOUT_MS = 10_000;
const DEFAULT_STREAM_WINDOW = 16 * 1024 * 1024;

export type BackchannelAddress =
  | { kind: "tcp"; host: string; port: number }
  | { kind: "tls"; host: string; port: number }
  | { kind: "unix"; path: string };

function parseHostPort(hostPort: string, address: string): { host: string; port: number } {
  const m = /^(?:\[([^\]]+)\]|([^:/]+)):(\d{1,5})$/.exec(hostPort);
  const port = m ? Number(m[3]) : Number.NaN;
  const host = m ? (m[1] ?? m[2]) : undefined;
  if (!host || !(port > 0 && port < 65536))
    throw new Error(`invalid address ${JSON.stringify(address)}: want host:port`);
  return { host, port };
}

/** Parses `tcp://host:port`, `host:port`, `tls://host:port`, `unix:/path` and `unix:///path`. */
export function parseBackchannelAddress(address: string): BackchannelAddress {
  if (address.startsWith("unix:")) {
    let path = address.slice("unix:".length);
    if (path.startsWith("//")) path = path.slice(2);
    if (!path) throw new Error(`invalid address ${JSON.stringify(address)}: empty socket path`);
    return { kind: "unix", path };
  }
  if (address.startsWith("tls://")) return { kind: "tls", ...parseHostPort(address.slice(6), address) };
  if (address.startsWith("tcp://")) return { kind: "tcp", ...parseHostPort(address.slice(6), address) };
  return { kind: "tcp", ...parseHostPort(address, address) };
}

export interface BackchannelDialOptions {
  /** Trusted CA certificates for tls:// addresses (default: Node's bundle). */
  ca?: string | Buffer | (string | Buffer)[];
  /** TLS server name to verify; defaults to the host when it is a DNS name. */
  servername?: string;
  /** Client certificate and key for TLS, if the server asks for one. */
  cert?: string | Buffer;
  key?: string | Buffer;
  connectTimeoutMs?: number;
  /** Receive window per yamux stream. */
  maxStreamWindow?: number;
  /**
   * Streams the server opens that are not sidechannels (e.g. its gRPC connection
   * back to us); their first bytes are still in the stream. Without it they are refused.
   */
  onServerStream?: (stream: YamuxStream) => void;
}

function connectSocket(address: BackchannelAddress, options: BackchannelDialOptions): Promise<Socket> {
  return new Promise((resolve, reject) => {
    let socket: Socket;
    let event: "connect" | "secureConnect";
    if (address.kind === "unix") {
      socket = tcpConnect({ path: address.path });
      event = "connect";
    } else if (address.kind === "tcp") {
      socket = tcpConnect({ host: address.host, port: address.port, noDelay: true });
      event = "connect";
    } else {
      socket = tlsConnect({
        host: address.host,
        port: address.port,
        servername: options.servername ?? (isIP(address.host) ? undefined : address.host),
        ca: options.ca,
        cert: options.cert,
        key: options.key,
        ALPNProtocols: ["h2"],
      });
      socket.setNoDelay(true);
      event = "secureConnect";
    }
    const timeoutMs = options.connectTimeoutMs ?? DEFAULT_CONNECT_TIMEOUT_MS;
    const timer = setTimeout(() => socket.destroy(new Error(`connect timed out after ${timeoutMs} ms`)), timeoutMs);
    const onError = (err: Error) => {
      clearTimeout(timer);
      reject(err);
    };
    socket.once("error", onError);
    socket.once(event, () => {
      clearTimeout(timer);
      socket.off("error", onError);
      resolve(socket);
    });
  });
}

function writeAsync(stream: Writable, data: Buffer): Promise<void> {
  return new Promise((resolve, reject) => {
    stream.write(data, (err) => (err ? reject(err) : resolve()));
  });
}

/** A sidechannel as the client sees it, inside the handler. */
export class ClientSidechannel {
  readonly id: bigint;
  /** Server→client bytes, raw; ends when the server closes the sidechannel. */
  readonly readable: Readable;
  /** The stream itself, for relaying bytes that are already pkt-line framed. */
  readonly rawWritable: Writable;
  private readonly stream: YamuxStream;
  private writeClosed = false;

  /** @internal */
  constructor(id: bigint, stream: YamuxStream) {
    this.id = id;
    this.stream = stream;
    this.readable = stream;
    this.rawWritable = stream;
  }

  /** Sends client→server data, framed as pkt-lines; resolves once the stream took it. */
  async write(data: string | Uint8Array): Promise<void> {
    if (this.writeClosed) throw new Error("sidechannel: write into a half-closed connection");
    const framed = encodePktLines(data);
    if (framed.length > 0) await writeAsync(this.stream, framed);
  }

  /** Sends the flush packet: the server's reader ends. The server can still send. */
  async closeWrite(): Promise<void> {
    if (this.writeClosed) return;
    this.writeClosed = true;
    await writeAsync(this.stream, flushPkt);
  }

  /** Everything the server sends until it closes the sidechannel. */
  readAll(): Promise<Buffer> {
    return new Promise((resolve, reject) => {
      const chunks: Buffer[] = [];
      this.stream.on("data", (chunk: Buffer) => chunks.push(chunk));
      this.stream.once("end", () => resolve(Buffer.concat(chunks)));
      this.stream.once("close", () => {
        if (!this.stream.readableEnded) reject(this.stream.errored ?? new Error("sidechannel: closed before the end"));
      });
    });
  }

  /** @internal Half-closes our side (FIN) and frees the stream once that is sent. */
  release(): void {
    if (this.stream.destroyed) return;
    if (this.stream.writableFinished) this.stream.destroy();
    else this.stream.end(() => this.stream.destroy());
  }
}

/**
 * A registered sidechannel handler. Send `metadata` with the call; after the call,
 * close() de-registers the handler and returns its result (or throws its error, or
 * throws if the server never opened the sidechannel).
 */
export class SidechannelWaiter<T> {
  readonly id: bigint;
  private readonly handler: (sidechannel: ClientSidechannel) => Promise<T>;
  private readonly deregister: () => void;
  private result: Promise<T> | undefined;

  /** @internal */
  constructor(id: bigint, handler: (sidechannel: ClientSidechannel) => Promise<T>, deregister: () => void) {
    this.id = id;
    this.handler = handler;
    this.deregister = deregister;
  }

  /** `gitaly-sidechannel-id: <id>`, to merge into the call's metadata. */
  get metadata(): Record<string, string> {
    return { [SIDECHANNEL_METADATA_KEY]: this.id.toString() };
  }

  /** @internal The server opened our sidechannel: confirm and run the handler. */
  start(stream: YamuxStream): void {
    const sidechannel = new ClientSidechannel(this.id, stream);
    // Before the handler runs: its first writes must follow the confirmation.
    stream.write("ok");
    this.result = (async () => {
      try {
        return await this.handler(sidechannel);
      } finally {
        sidechannel.release();
      }
    })();
    // Observed by close(); until then a failure must not count as unhandled.
    this.result.catch(() => {});
  }

  async close(): Promise<T> {
    this.deregister();
    if (!this.result) throw new Error("sidechannel: callback de-registered without having run");
    return this.result;
  }
}

export interface BackchannelCallOptions {
  metadata?: CallMetadata;
  deadlineMs?: number;
}

/** A dialled backchannel connection: gRPC calls, sidechannels, and the yamux session under them. */
export class BackchannelConnection {
  readonly address: BackchannelAddress;
  readonly session: YamuxSession;
  readonly http2: http2.ClientHttp2Session;
  private readonly socket: Socket;
  private readonly waiters = new Map<bigint, SidechannelWaiter<unknown>>();
  private readonly onServerStream: ((stream: YamuxStream) => void) | undefined;
  private nextSidechannelId = 1n;

  /** @internal Use dialBackchannel. */
  constructor(address: BackchannelAddress, socket: Socket, options: BackchannelDialOptions) {
    this.address = address;
    this.socket = socket;
    this.onServerStream = options.onServerStream;
    socket.on("error", () => {});
    socket.write(BACKCHANNEL_MAGIC);
    this.session = new YamuxSession(socket, {
      role: "client",
      maxStreamWindow: options.maxStreamWindow ?? DEFAULT_STREAM_WINDOW,
      onStream: (stream) => {
        this.acceptServerStream(stream).catch(() => stream.destroy());
      },
    });
    const grpcStream = this.session.open();
    const authority =
      address.kind === "unix"
        ? "http://localhost"
        : `http://${address.host.includes(":") ? `[${address.host}]` : address.host}:${address.port}`;
    this.http2 = http2.connect(authority, { createConnection: () => grpcStream });
    this.http2.on("error", () => {});
    this.http2.once("close", () => this.session.close());
    this.session.once("close", () => {
      if (!this.http2.destroyed) this.http2.destroy();
    });
  }

  get closed(): boolean {
    return this.session.closed;
  }

  /** A unary call with already serialized messages. */
  unaryRaw(path: string, request: Uint8Array, options: BackchannelCallOptions = {}): Promise<UnaryCallResult> {
    return unaryCall(this.http2, path, request, options.metadata, { deadlineMs: options.deadlineMs });
  }

  /** A typed unary call; rejects with a grpc-js-shaped ServiceError. */
  async unary<M extends DescMethod>(
    method: M,
    request: MessageInitShape<M["input"]>,
    options: BackchannelCallOptions = {},
  ): Promise<MessageShape<M["output"]>> {
    const bytes = toBinary(method.input, create(method.input, request));
    const { response } = await this.unaryRaw(methodPath(method), bytes, options);
    return fromBinary(method.output, response) as MessageShape<M["output"]>;
  }

  /** Registers a sidechannel handler under a fresh id. */
  registerSidechannel<T>(handler: (sidechannel: ClientSidechannel) => Promise<T>): SidechannelWaiter<T> {
    const id = this.nextSidechannelId;
    this.nextSidechannelId += 1n;
    const waiter = new SidechannelWaiter(id, handler, () => this.waiters.delete(id));
    this.waiters.set(id, waiter as SidechannelWaiter<unknown>);
    return waiter;
  }

  /**
   * Runs `call` with sidechannel metadata added, and `handler` on the sidechannel
   * the server opens for it. A failed call wins over the handler's outcome; a call
   * that succeeded without the server opening the sidechannel is an error.
   */
  async withSidechannel<T, R>(
    handler: (sidechannel: ClientSidechannel) => Promise<T>,
    call: (metadata: grpc.Metadata) => Promise<R>,
    metadata: CallMetadata = {},
  ): Promise<{ response: R; sidechannel: T }> {
    const waiter = this.registerSidechannel(handler);
    const md = metadata instanceof grpc.Metadata ? metadata.clone() : new grpc.Metadata();
    if (!(metadata instanceof grpc.Metadata)) for (const [k, v] of Object.entries(metadata)) md.set(k, v);
    md.set(SIDECHANNEL_METADATA_KEY, waiter.id.toString());
    let response: R;
    try {
      response = await call(md);
    } catch (err) {
      await waiter.close().catch(() => undefined);
      throw err;
    }
    return { response, sidechannel: await waiter.close() };
  }

  /** Closes gRPC, the yamux session and the connection; resolves when the socket is closed. */
  close(): Promise<void> {
    return new Promise((resolve) => {
      if (this.socket.destroyed) {
        resolve();
        return;
      }
      this.socket.once("close", () => resolve());
      if (!this.http2.closed) this.http2.close();
      this.session.close();
    });
  }

  private async acceptServerStream(stream: YamuxStream): Promise<void> {
    const magic = await readPrefix(stream, SIDECHANNEL_MAGIC.length, SIDECHANNEL_TIMEOUT_MS);
    if (magic.toString("latin1") !== SIDECHANNEL_MAGIC) {
      stream.unshift(magic);
      if (this.onServerStream) this.onServerStream(stream);
      else stream.destroy();
      return;
    }
    const id = (await readPrefix(stream, 8, SIDECHANNEL_TIMEOUT_MS)).readBigInt64BE(0);
    const waiter = this.waiters.get(id);
    if (!waiter) {
      // Like upstream: an unknown id gets the stream closed, which the server reads as EOF.
      stream.end(() => stream.destroy());
      return;
    }
    this.waiters.delete(id);
    waiter.start(stream);
  }
}

/** Dials `address` and sets up the backchannel; resolves once HTTP/2 is ready for calls. */
export async function dialBackchannel(
  address: string,
  options: BackchannelDialOptions = {},
): Promise<BackchannelConnection> {
  const parsed = parseBackchannelAddress(address);
  const socket = await connectSocket(parsed, options);
  const conn = new BackchannelConnection(parsed, socket, options);
  await new Promise<void>((resolve, reject) => {
    const onError = (err: Error) => reject(err);
    conn.http2.once("error", onError);
    conn.http2.once("connect", () => {
      conn.http2.off("error", onError);
      resolve();
    });
  }).catch(async (err: unknown) => {
    await conn.close();
    throw err;
  });
  return conn;
}
