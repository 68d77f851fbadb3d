// A yamux session: many byte streams multiplexed over one connection, in the wire
// format of hashicorp/yamux (its spec.md), which is what Gitaly's backchannel and
// sidechannels speak. Written here rather than taken from yamux-js 0.2.0 because that
// library drops bytes whenever a frame spans two socket reads, never reports a
// peer's FIN as end-of-stream, and grants receive window without anyone reading.
//
// Semantics follow the Go implementation where a peer could notice:
// - frame header: version 0, type, flags, stream id, length (12 bytes, big endian);
// - the opener sends SYN with a window update, the acceptor answers ACK (or RST to
//   refuse); both assume a 256 KiB window and immediately grant up to the configured
//   maximum;
// - a window update is sent only once at least half the maximum has been consumed,
//   so a stream never buffers more than the maximum window;
// - FIN half-closes; RST aborts; pings are answered, never sent (keepalive off, as
//   Gitaly configures it: gRPC keeps the connection alive).
//
// Frames written during one turn of the event loop leave in one writev: the transport
// is corked at the first frame and uncorked from setImmediate (or at once past
// MAX_CORKED_BYTES). A relay that receives a burst of frames on one connection and
// re-sends them on another would otherwise make one syscall per frame.
//
// A relay can splice one stream into another (YamuxStream.spliceTo): Data frames that
// arrive for the source go out as Data frames of the target in the same turn, with no
// Readable/Writable machinery in between. Flow control carries through: bytes the
// target has no window (or transport room) for wait in the source's receive queue, and
// the source's peer gets window back only as they leave.
import { EventEmitter } from "node:events";
import { Duplex } from "node:stream";

const PROTOCOL_VERSION = 0;
export const YAMUX_HEADER_SIZE = 12;

const TYPE_DATA = 0;
const TYPE_WINDOW_UPDATE = 1;
const TYPE_PING = 2;
const TYPE_GO_AWAY = 3;

const FLAG_SYN = 1;
const FLAG_ACK = 2;
const FLAG_FIN = 4;
const FLAG_RST = 8;

const GO_AWAY_NORMAL = 0;
const GO_AWAY_PROTOCOL_ERROR = 1;

/** Every stream starts with this window in both directions (spec.md "Flow Control"). */
export const INITIAL_STREAM_WINDOW = 256 * 1024;
// Bounds one frame so that streams sharing a connection interleave fairly.
const MAX_DATA_FRAME = 64 * 1024;
// After a graceful close, how long the peer gets to hang up before we drop the connection.
const CLOSE_GRACE_MS = 5_000;
// Corked bytes beyond which frames go out without waiting for the end of the turn, so a
// large write with a large window is not held in memory in full.
const MAX_CORKED_BYTES = 1024 * 1024;

export interface YamuxSessionOptions {
  /** Clients open odd stream ids, servers even ones. */
  role: "client" | "server";
  /** Receive window per stream; at least INITIAL_STREAM_WINDOW. */
  maxStreamWindow?: number;
  /**
   * Called for every stream the peer opens. The stream is acknowledged when the
   * callback returns, unless it was destroyed inside it, which refuses it (RST).
   * Without a callback, every incoming stream is refused.
   */
  onStream?: (stream: YamuxStream) => void;
}

function streamError(message: string, code: string): Error {
  return Object.assign(new Error(message), { code });
}

export class YamuxSession extends EventEmitter {
  readonly role: "client" | "server";
  readonly maxStreamWindow: number;
  private readonly transport: Duplex;
  private readonly onStream: ((stream: YamuxStream) => void) | undefined;
  private readonly streams = new Map<number, YamuxStream>();
  private nextStreamId: number;
  private readonly header = Buffer.alloc(YAMUX_HEADER_SIZE);
  private headerFill = 0;
  // The Data frame whose payload is arriving: its stream (undefined: discard) and flags.
  private payloadRemaining = 0;
  private payloadStream: YamuxStream | undefined;
  private payloadFin = false;
  private drainWaiters: (() => void)[] = [];
  private receiving = false;
  private receiveBacklog: Buffer[] = [];
  private localGoAway = false;
  private remoteGoAway = false;
  private shutdown = false;
  private closeError: Error | undefined;
  // Whether we corked the transport and an uncork is scheduled; bytes written since.
  private corked = false;
  private corkedBytes = 0;
  private readonly uncorkLater = () => this.flush();

  constructor(transport: Duplex, options: YamuxSessionOptions) {
    super();
    this.transport = transport;
    this.role = options.role;
    this.maxStreamWindow = Math.max(options.maxStreamWindow ?? INITIAL_STREAM_WINDOW, INITIAL_STREAM_WINDOW);
    this.onStream = options.onStream;
    this.nextStreamId = options.role === "client" ? 1 : 2;
    transport.on("data", (chunk: Buffer) => this.receive(chunk));
    transport.on("drain", () => this.flushDrainWaiters());
    transport.on("end", () => this.terminate(streamError("yamux: connection closed by peer", "ECONNRESET")));
    transport.on("error", (err: Error) => this.terminate(err));
    transport.on("close", () => this.terminate(streamError("yamux: connection closed", "ECONNRESET")));
    // The transport may have been paused while its first bytes were peeked at.
    transport.resume();
  }

  /** True once the session is shut down: no streams can be opened or used. */
  get closed(): boolean {
    return this.shutdown;
  }

  /** The error that ended the session, if it did not end by a local close(). */
  get error(): Error | undefined {
    return this.closeError;
  }

  /** Number of streams not yet fully closed. */
  get streamCount(): number {
    return this.streams.size;
  }

  /** Opens a stream to the peer. Data may be written at once; the peer's ACK is not awaited. */
  open(): YamuxStream {
    if (this.shutdown) throw streamError("yamux: session shutdown", "ECONNABORTED");
    if (this.remoteGoAway) throw streamError("yamux: remote end is not accepting connections", "ECONNREFUSED");
    const id = this.nextStreamId;
    this.nextStreamId += 2;
    const stream = new YamuxStream(this, id, "outbound");
    this.streams.set(id, stream);
    stream.sendWindowUpdate();
    return stream;
  }

  /** Graceful shutdown: tells the peer (GoAway), closes the connection, aborts open streams. */
  close(): void {
    if (this.shutdown) return;
    this.localGoAway = true;
    this.sendFrame(TYPE_GO_AWAY, 0, 0, GO_AWAY_NORMAL);
    this.flush();
    this.transport.end();
    const timer = setTimeout(() => this.transport.destroy(), CLOSE_GRACE_MS);
    timer.unref();
    this.transport.once("close", () => clearTimeout(timer));
    this.finish(streamError("yamux: session shutdown", "ECONNABORTED"), false);
  }

  /** Drops the connection at once. */
  destroy(err?: Error): void {
    this.terminate(err ?? streamError("yamux: session shutdown", "ECONNABORTED"));
  }

  private terminate(err: Error): void {
    if (this.shutdown) return;
    this.finish(err, true);
    this.transport.destroy();
  }

  private finish(err: Error, failed: boolean): void {
    this.shutdown = true;
    if (failed) this.closeError = err;
    const streams = [...this.streams.values()];
    this.streams.clear();
    for (const stream of streams) stream.sessionClosed(err);
    this.flushDrainWaiters();
    this.emit("close", failed ? err : undefined);
  }

  /**
   * @internal Queues one frame for the end of this turn of the event loop; false if the
   * transport asks writers to wait for 'drain'. Header and payload are separate chunks
   * (no copy); the header comes from Buffer's shared pool.
   */
  sendFrame(type: number, flags: number, streamId: number, length: number, payload?: Buffer): boolean {
    if (this.shutdown || this.transport.destroyed || this.transport.writableEnded) return false;
    const header = Buffer.allocUnsafe(YAMUX_HEADER_SIZE);
    header[0] = PROTOCOL_VERSION;
    header[1] = type;
    header.writeUInt16BE(flags, 2);
    header.writeUInt32BE(streamId, 4);
    header.writeUInt32BE(length, 8);
    if (!this.corked) {
      this.corked = true;
      this.transport.cork();
      setImmediate(this.uncorkLater);
    }
    let ok = this.transport.write(header);
    if (payload) ok = this.transport.write(payload);
    this.corkedBytes += YAMUX_HEADER_SIZE + (payload?.length ?? 0);
    if (this.corkedBytes >= MAX_CORKED_BYTES) {
      this.flush();
      ok = !this.transport.writableNeedDrain;
    }
    return ok;
  }

  /** Sends the frames queued so far (one writev); the scheduled uncork then finds nothing to do. */
  private flush(): void {
    if (!this.corked) return;
    this.corked = false;
    this.corkedBytes = 0;
    if (this.transport.writableCorked > 0) this.transport.uncork();
  }

  /**
   * @internal True while the transport holds more unsent bytes than one corked batch: a
   * relay should wait for whenWritable() before queueing more.
   */
  get congested(): boolean {
    return !this.shutdown && this.transport.writableNeedDrain && this.transport.writableLength >= MAX_CORKED_BYTES;
  }

  /** @internal Calls `fn` once the transport has room again (at once if it has). */
  whenWritable(fn: () => void): void {
    if (this.shutdown || !this.transport.writableNeedDrain) fn();
    else this.drainWaiters.push(fn);
  }

  /** @internal Stops routing frames to a stream that is done. */
  forget(id: number): void {
    this.streams.delete(id);
  }

  private flushDrainWaiters(): void {
    const waiters = this.drainWaiters;
    this.drainWaiters = [];
    for (const fn of waiters) fn();
  }

  private receive(chunk: Buffer): void {
    // Handling a frame can write to the transport, and an in-memory transport may
    // deliver the peer's answer synchronously: queue it behind the current chunk.
    if (this.receiving) {
      this.receiveBacklog.push(chunk);
      return;
    }
    this.receiving = true;
    try {
      this.parse(chunk);
      while (this.receiveBacklog.length > 0) {
        const batch = this.receiveBacklog;
        this.receiveBacklog = [];
        for (const next of batch) this.parse(next);
      }
    } finally {
      this.receiving = false;
    }
  }

  private parse(chunk: Buffer): void {
    let offset = 0;
    while (offset < chunk.length && !this.shutdown) {
      if (this.payloadRemaining > 0) {
        const n = Math.min(this.payloadRemaining, chunk.length - offset);
        const piece = chunk.subarray(offset, offset + n);
        offset += n;
        this.payloadRemaining -= n;
        this.payloadStream?.receiveData(piece);
        if (this.payloadRemaining === 0) this.endPayload();
        continue;
      }
      const n = Math.min(YAMUX_HEADER_SIZE - this.headerFill, chunk.length - offset);
      chunk.copy(this.header, this.headerFill, offset, offset + n);
      this.headerFill += n;
      offset += n;
      if (this.headerFill === YAMUX_HEADER_SIZE) {
        this.headerFill = 0;
        this.handleHeader();
      }
    }
  }

  private endPayload(): void {
    const stream = this.payloadStream;
    const fin = this.payloadFin;
    this.payloadStream = undefined;
    this.payloadFin = false;
    if (stream && fin) stream.remoteFinished();
  }

  private handleHeader(): void {
    const h = this.header;
    const version = h.readUInt8(0);
    const type = h.readUInt8(1);
    const flags = h.readUInt16BE(2);
    const id = h.readUInt32BE(4);
    const length = h.readUInt32BE(8);
    if (version !== PROTOCOL_VERSION) {
      this.protocolError(`invalid protocol version ${version}`);
      return;
    }
    switch (type) {
      case TYPE_DATA:
      case TYPE_WINDOW_UPDATE:
        this.handleStreamFrame(type, flags, id, length);
        return;
      case TYPE_PING:
        // Echo the opaque value; replies to our own pings cannot arrive, we send none.
        if (flags & FLAG_SYN) this.sendFrame(TYPE_PING, FLAG_ACK, 0, length);
        return;
      case TYPE_GO_AWAY:
        if (length === GO_AWAY_NORMAL) {
          this.remoteGoAway = true;
          this.emit("goaway");
          return;
        }
        this.terminate(
          streamError(
            length === GO_AWAY_PROTOCOL_ERROR ? "yamux: protocol error reported by peer" : "yamux: peer went away",
            "ECONNRESET",
          ),
        );
        return;
      default:
        this.protocolError(`invalid message type ${type}`);
    }
  }

  private handleStreamFrame(type: number, flags: number, id: number, length: number): void {
    if (flags & FLAG_SYN) this.incomingStream(id);
    if (this.shutdown) return;
    const stream = this.streams.get(id);
    if (type === TYPE_WINDOW_UPDATE) {
      if (!stream) return;
      stream.handleFlags(flags);
      if (flags & FLAG_FIN) stream.remoteFinished();
      stream.addSendWindow(length);
      return;
    }
    if (stream) {
      stream.handleFlags(flags);
      if (!stream.reserveReceive(length)) {
        this.protocolError(`receive window exceeded on stream ${id} (${length} bytes)`);
        return;
      }
    }
    if (length === 0) {
      if (stream && flags & FLAG_FIN) stream.remoteFinished();
      return;
    }
    // Data for a stream we no longer track (we reset it) is read and dropped.
    this.payloadRemaining = length;
    this.payloadStream = stream;
    this.payloadFin = (flags & FLAG_FIN) !== 0;
  }

  private incomingStream(id: number): void {
    if (this.localGoAway || this.shutdown) {
      this.sendFrame(TYPE_WINDOW_UPDATE, FLAG_RST, id, 0);
      return;
    }
    if (this.streams.has(id)) {
      this.protocolError(`duplicate stream ${id}`);
      return;
    }
    const stream = new YamuxStream(this, id, "inbound");
    this.streams.set(id, stream);
    if (this.onStream) {
      try {
        this.onStream(stream);
      } catch (err) {
        stream.destroy(err as Error);
      }
    } else {
      stream.destroy();
    }
    if (!stream.destroyed) stream.sendWindowUpdate();
  }

  private protocolError(message: string): void {
    this.sendFrame(TYPE_GO_AWAY, 0, 0, GO_AWAY_PROTOCOL_ERROR);
    this.flush();
    this.terminate(streamError(`yamux: ${message}`, "EPROTO"));
  }
}

interface PendingWrite {
  data: Buffer;
  callback: (err?: Error | null) => void;
}

interface Splice {
  target: YamuxStream;
  resolve: () => void;
  reject: (err: Error) => void;
  // Whether the target's earlier writes have gone out, so spliced frames may follow.
  started: boolean;
  // Whether a wait for the target's transport to drain is registered.
  awaitingDrain: boolean;
  detachTarget: () => void;
}

/**
 * One yamux stream: a Duplex whose end() half-closes (FIN) and whose destroy()
 * before end() aborts (RST). Destroying after end() keeps draining the peer's data
 * until it closes too, so a peer still reading our last bytes is never reset.
 * Carries optional address fields so that consumers that log or key on a socket's
 * peer (grpc-js, Node's http2) can be handed a stream in place of a socket.
 */
export class YamuxStream extends Duplex {
  readonly id: number;
  remoteAddress: string | undefined;
  remotePort: number | undefined;
  localAddress: string | undefined;
  localPort: number | undefined;
  private readonly session: YamuxSession;
  private synPending: boolean;
  private ackPending: boolean;
  private recvWindow = INITIAL_STREAM_WINDOW;
  private sendWindow = INITIAL_STREAM_WINDOW;
  // Received bytes not yet pushed to the reader: recvQueue[recvHead..], recvQueued bytes.
  private recvQueue: Buffer[] = [];
  private recvHead = 0;
  private recvQueued = 0;
  // Bytes of the current Data frame announced but not yet arrived: they count as buffered.
  private recvInFlight = 0;
  private wantsRead = false;
  private localFin = false;
  private remoteFin = false;
  private eofPushed = false;
  private reset = false;
  private draining = false;
  private released = false;
  private pendingWrite: PendingWrite | undefined;
  // This stream's received data goes straight to another stream (spliceTo).
  private splice: Splice | undefined;
  // The stream spliced into this one, told when this one gets window or fails.
  private spliceSource: YamuxStream | undefined;

  /** @internal Streams come from YamuxSession.open() or its onStream callback. */
  constructor(session: YamuxSession, id: number, direction: "inbound" | "outbound") {
    super({ allowHalfOpen: true });
    this.session = session;
    this.id = id;
    this.synPending = direction === "outbound";
    this.ackPending = direction === "inbound";
    // A transport layer must not take the process down because nobody listened for a
    // peer's reset; consumers that care attach their own listener or use pipeline().
    this.on("error", () => {});
  }

  private takeFlags(): number {
    if (this.synPending) {
      this.synPending = false;
      return FLAG_SYN;
    }
    if (this.ackPending) {
      this.ackPending = false;
      return FLAG_ACK;
    }
    return 0;
  }

  /** @internal Grants the peer the window we have consumed; also carries a pending SYN/ACK. */
  sendWindowUpdate(): void {
    if (this.reset || this.released) return;
    const max = this.session.maxStreamWindow;
    const delta = max - this.recvQueued - this.recvInFlight - this.recvWindow;
    const flags = this.takeFlags();
    if (delta < max / 2 && flags === 0) return;
    this.recvWindow += delta;
    this.session.sendFrame(TYPE_WINDOW_UPDATE, flags, this.id, delta);
  }

  /** @internal Accounts for an announced Data frame; false if it exceeds our window. */
  reserveReceive(length: number): boolean {
    if (length > this.recvWindow) return false;
    this.recvWindow -= length;
    this.recvInFlight += length;
    return true;
  }

  /** @internal Payload bytes of a Data frame for this stream. */
  receiveData(chunk: Buffer): void {
    this.recvInFlight -= chunk.length;
    if (this.draining || this.reset || this.destroyed) {
      this.sendWindowUpdate();
      return;
    }
    this.recvQueue.push(chunk);
    this.recvQueued += chunk.length;
    if (this.splice) this.forwardSpliced();
    else if (this.wantsRead) this.flushReceived();
  }

  /** @internal ACK and RST; FIN is applied after the frame's payload by remoteFinished(). */
  handleFlags(flags: number): void {
    if (flags & FLAG_RST) {
      this.reset = true;
      this.release();
      this.failPendingWrite(streamError("yamux: stream reset by peer", "ECONNRESET"));
      this.spliceSource?.failSplice(streamError("yamux: relay target reset by peer", "ECONNRESET"));
      if (!this.destroyed) this.destroy(streamError("yamux: stream reset by peer", "ECONNRESET"));
    }
  }

  /** @internal The peer sent FIN: it will send no more data. */
  remoteFinished(): void {
    if (this.remoteFin) return;
    this.remoteFin = true;
    if (this.draining) {
      this.release();
      return;
    }
    if (this.splice) this.forwardSpliced();
    else this.flushReceived();
    if (this.localFin) this.release();
  }

  /** @internal The peer granted more window. */
  addSendWindow(delta: number): void {
    this.sendWindow += delta;
    if (this.pendingWrite) this.pump();
    this.spliceSource?.forwardSpliced();
  }

  /** @internal The whole session went away. */
  sessionClosed(err: Error): void {
    this.released = true;
    this.failPendingWrite(err);
    this.spliceSource?.failSplice(err);
    if (this.destroyed) return;
    // Data the peer finished sending stays readable (or is still relayed); a
    // half-received stream is cut off.
    if (this.remoteFin) {
      if (this.splice) this.forwardSpliced();
      else this.flushReceived();
    } else {
      this.destroy(err);
    }
  }

  private release(): void {
    if (this.released) return;
    this.released = true;
    this.session.forget(this.id);
  }

  private flushReceived(): void {
    while (this.wantsRead && this.recvHead < this.recvQueue.length) {
      const chunk = this.recvQueue[this.recvHead] as Buffer;
      this.recvHead += 1;
      this.recvQueued -= chunk.length;
      this.wantsRead = this.push(chunk);
    }
    if (this.recvHead === this.recvQueue.length) {
      this.recvQueue = [];
      this.recvHead = 0;
    }
    if (this.recvQueued === 0 && this.remoteFin && !this.eofPushed) {
      this.eofPushed = true;
      this.push(null);
    }
    if (!this.remoteFin) this.sendWindowUpdate();
  }

  override _read(): void {
    this.wantsRead = true;
    if (!this.splice) this.flushReceived();
  }

  /**
   * Sends everything the peer sends on this stream, from now until its FIN, as Data
   * frames of `target` (a stream of this or another session), without passing through
   * either stream's Readable/Writable side. Bytes already buffered for reading go first.
   * Resolves once the peer finished and every byte was handed to the target's session;
   * rejects if either stream is reset or closed first. The target is not ended, and
   * nothing else may write to it until the returned promise settles.
   */
  spliceTo(target: YamuxStream): Promise<void> {
    if (this.splice) return Promise.reject(new Error("yamux: stream is already spliced"));
    if (target === this) return Promise.reject(new Error("yamux: cannot splice a stream into itself"));
    if (target.spliceSource) return Promise.reject(new Error("yamux: target already receives a splice"));
    return new Promise<void>((resolve, reject) => {
      // Whatever the Readable side already holds precedes what is still queued here.
      const buffered: Buffer[] = [];
      for (let chunk = this.read() as Buffer | null; chunk !== null; chunk = this.read() as Buffer | null) {
        buffered.push(chunk);
      }
      if (buffered.length > 0) {
        const pending = this.recvQueue.slice(this.recvHead);
        this.recvQueue = [...buffered, ...pending];
        this.recvHead = 0;
        for (const chunk of buffered) this.recvQueued += chunk.length;
      }
      const onTargetClose = () => this.failSplice(target.errored ?? streamError("yamux: relay target closed", "EPIPE"));
      target.once("close", onTargetClose);
      this.splice = {
        target,
        resolve,
        reject,
        started: false,
        awaitingDrain: false,
        detachTarget: () => target.off("close", onTargetClose),
      };
      const splice = this.splice;
      target.spliceSource = this;
      // Writes the target took before the splice leave first: an empty write completes
      // only after every earlier one did.
      target.write(Buffer.alloc(0), () => {
        splice.started = true;
        this.forwardSpliced();
      });
    });
  }

  /** Moves queued bytes to the splice target as far as its window and transport allow. */
  private forwardSpliced(): void {
    const splice = this.splice;
    if (!splice?.started) return;
    const target = splice.target;
    if (target.reset || target.released || target.destroyed || target.localFin) {
      this.failSplice(streamError("yamux: relay target closed", target.reset ? "ECONNRESET" : "EPIPE"));
      return;
    }
    while (this.recvHead < this.recvQueue.length && target.sendWindow > 0) {
      if (splice.awaitingDrain) return;
      if (target.session.congested) {
        splice.awaitingDrain = true;
        target.session.whenWritable(() => {
          splice.awaitingDrain = false;
          this.forwardSpliced();
        });
        return;
      }
      const chunk = this.recvQueue[this.recvHead] as Buffer;
      const n = Math.min(chunk.length, target.sendWindow, MAX_DATA_FRAME);
      if (n === chunk.length) this.recvHead += 1;
      else this.recvQueue[this.recvHead] = chunk.subarray(n);
      this.recvQueued -= n;
      target.sendWindow -= n;
      target.session.sendFrame(TYPE_DATA, target.takeFlags(), target.id, n, chunk.subarray(0, n));
    }
    if (this.recvHead === this.recvQueue.length) {
      this.recvQueue = [];
      this.recvHead = 0;
    }
    if (this.splice !== splice) return;
    if (this.remoteFin) {
      if (this.recvQueued === 0) this.endSplice();
    } else {
      this.sendWindowUpdate();
    }
  }

  private endSplice(): void {
    const splice = this.splice;
    if (!splice) return;
    this.splice = undefined;
    splice.target.spliceSource = undefined;
    splice.detachTarget();
    // Every byte went to the target: the Readable side ends empty.
    if (!this.eofPushed) {
      this.eofPushed = true;
      this.push(null);
    }
    splice.resolve();
  }

  /** @internal Ends a splice with an error (either side failed). */
  failSplice(err: Error): void {
    const splice = this.splice;
    if (!splice) return;
    this.splice = undefined;
    splice.target.spliceSource = undefined;
    splice.detachTarget();
    splice.reject(err);
  }

  override _write(chunk: Buffer, _encoding: BufferEncoding, callback: (err?: Error | null) => void): void {
    if (this.reset || this.released) {
      callback(streamError("yamux: stream closed", this.reset ? "ECONNRESET" : "EPIPE"));
      return;
    }
    if (chunk.length === 0) {
      callback();
      return;
    }
    this.pendingWrite = { data: chunk, callback };
    this.pump();
  }

  private pump(): void {
    const w = this.pendingWrite;
    if (!w) return;
    if (this.released) {
      this.failPendingWrite(streamError("yamux: stream closed", this.reset ? "ECONNRESET" : "EPIPE"));
      return;
    }
    while (w.data.length > 0 && this.sendWindow > 0) {
      const n = Math.min(w.data.length, this.sendWindow, MAX_DATA_FRAME);
      const piece = w.data.subarray(0, n);
      // Account before sending: a synchronous transport can hand us the peer's window
      // update from inside sendFrame, which re-enters pump().
      this.sendWindow -= n;
      w.data = w.data.subarray(n);
      this.session.sendFrame(TYPE_DATA, this.takeFlags(), this.id, n, piece);
    }
    if (this.pendingWrite !== w) return; // a re-entered pump() finished this write
    if (w.data.length > 0) return; // the rest goes out when the peer grants window
    this.pendingWrite = undefined;
    this.session.whenWritable(() => w.callback());
  }

  private failPendingWrite(err: Error): void {
    const w = this.pendingWrite;
    this.pendingWrite = undefined;
    w?.callback(err);
  }

  override _final(callback: (err?: Error | null) => void): void {
    if (this.reset || this.released) {
      callback(this.reset ? streamError("yamux: stream reset by peer", "ECONNRESET") : null);
      return;
    }
    this.localFin = true;
    this.session.sendFrame(TYPE_WINDOW_UPDATE, this.takeFlags() | FLAG_FIN, this.id, 0);
    if (this.remoteFin) this.release();
    callback();
  }

  override _destroy(err: Error | null, callback: (err?: Error | null) => void): void {
    this.pendingWrite = undefined;
    this.failSplice(err ?? streamError("yamux: relay source destroyed", "ECONNABORTED"));
    this.spliceSource?.failSplice(err ?? streamError("yamux: relay target destroyed", "EPIPE"));
    if (!this.released) {
      if (!this.localFin) {
        this.reset = true;
        this.session.sendFrame(TYPE_WINDOW_UPDATE, FLAG_RST, this.id, 0);
        this.release();
      } else if (!this.remoteFin) {
        // Our side is complete; keep granting window and dropping data until the peer
        // closes, as a reset could discard bytes it has not read yet.
        this.draining = true;
        this.recvQueue = [];
        this.recvHead = 0;
        this.recvQueued = 0;
        this.sendWindowUpdate();
      } else {
        this.release();
      }
    }
    callback(err);
  }
}
