// Git pkt-line framing (gitprotocol-common "pkt-line Format") and the side-band-64k
// multiplexing built on it. A pkt-line is a 4-hex-digit length that counts itself,
// followed by the payload; lengths 0000-0002 are special packets without payload.
import { Transform, type TransformCallback } from "node:stream";

/** Largest packet git accepts, length prefix included (LARGE_PACKET_MAX). */
export const MAX_PKT_SIZE = 65520;
/** Largest payload of one data packet. */
export const MAX_PKT_PAYLOAD = MAX_PKT_SIZE - 4;
/** Largest payload of one side-band-64k packet: the band byte takes one more. */
export const MAX_SIDEBAND_DATA = MAX_PKT_SIZE - 5;

export const flushPkt: Buffer = Buffer.from("0000");
export const delimPkt: Buffer = Buffer.from("0001");
export const responseEndPkt: Buffer = Buffer.from("0002");

/** Side-band channels: 1 pack data (stdout), 2 progress (stderr), 3 fatal error. */
export const BAND_DATA = 1;
export const BAND_PROGRESS = 2;
export const BAND_ERROR = 3;
export type SidebandBand = typeof BAND_DATA | typeof BAND_PROGRESS | typeof BAND_ERROR;

export type PktLine =
  | { kind: "data"; payload: Buffer }
  | { kind: "flush" }
  | { kind: "delim" }
  | { kind: "response-end" };

export class PktLineError extends Error {
  constructor(message: string) {
    super(message);
    this.name = "PktLineError";
  }
}

function toBuffer(data: string | Uint8Array): Buffer {
  if (typeof data === "string") return Buffer.from(data);
  return Buffer.isBuffer(data) ? data : Buffer.from(data.buffer, data.byteOffset, data.byteLength);
}

function lengthPrefix(n: number): string {
  return n.toString(16).padStart(4, "0");
}

/** One data packet. Throws when the payload does not fit in a single packet. */
export function encodePktLine(data: string | Uint8Array): Buffer {
  const payload = toBuffer(data);
  if (payload.length > MAX_PKT_PAYLOAD) {
    throw new PktLineError(`pkt-line payload too large: ${payload.length} bytes (max ${MAX_PKT_PAYLOAD})`);
  }
  return Buffer.concat([Buffer.from(lengthPrefix(payload.length + 4)), payload]);
}

/** Frames arbitrary data as as many data packets as it needs (none for empty data). */
export function encodePktLines(data: string | Uint8Array): Buffer {
  const payload = toBuffer(data);
  const parts: Buffer[] = [];
  for (let off = 0; off < payload.length; off += MAX_PKT_PAYLOAD) {
    const chunk = payload.subarray(off, off + MAX_PKT_PAYLOAD);
    parts.push(Buffer.from(lengthPrefix(chunk.length + 4)), chunk);
  }
  return Buffer.concat(parts);
}

/** Side-band-64k packets for `data` on `band`, split at MAX_SIDEBAND_DATA. */
export function encodeSideband(band: SidebandBand, data: string | Uint8Array): Buffer {
  const payload = toBuffer(data);
  const parts: Buffer[] = [];
  for (let off = 0; off < payload.length; off += MAX_SIDEBAND_DATA) {
    const chunk = payload.subarray(off, off + MAX_SIDEBAND_DATA);
    parts.push(Buffer.from(lengthPrefix(chunk.length + 5)), Buffer.of(band), chunk);
  }
  return Buffer.concat(parts);
}

/** Splits a side-band packet payload into its band and data. */
export function decodeSideband(payload: Uint8Array): { band: number; data: Buffer } {
  const buf = toBuffer(payload);
  if (buf.length === 0) throw new PktLineError("invalid sideband packet: empty payload");
  return { band: buf[0] as number, data: buf.subarray(1) };
}

const HEX4 = /^[0-9a-fA-F]{4}$/;

/**
 * The value of a 4-byte length prefix. 0-2 are the special packets; 3 and anything
 * above MAX_PKT_SIZE are invalid.
 */
export function parsePktLength(prefix: Uint8Array): number {
  const text = Buffer.from(prefix.buffer, prefix.byteOffset, 4).toString("latin1");
  if (!HEX4.test(text)) throw new PktLineError(`invalid pkt-line length prefix ${JSON.stringify(text)}`);
  const length = Number.parseInt(text, 16);
  if (length === 3 || length > MAX_PKT_SIZE) throw new PktLineError(`invalid pkt-line length ${length}`);
  return length;
}

function special(length: number): PktLine {
  if (length === 0) return { kind: "flush" };
  if (length === 1) return { kind: "delim" };
  return { kind: "response-end" };
}

/**
 * Incremental pkt-line parser: feed it bytes as they arrive, take packets out as
 * they complete. Keeps chunks as they came and joins only the bytes of the packet
 * being taken, so a large packet arriving in many small reads is not re-copied.
 */
export class PktLineParser {
  private chunks: Buffer[] = [];
  private size = 0;
  // Length of the packet being assembled, parsed once its prefix arrived; -1 if none.
  private pendingLength = -1;

  /** Bytes received but not yet returned as packets. */
  get buffered(): number {
    return this.size;
  }

  feed(chunk: Uint8Array): void {
    if (chunk.length === 0) return;
    this.chunks.push(toBuffer(chunk));
    this.size += chunk.length;
  }

  /** The next complete packet, or undefined until more bytes arrive. Throws PktLineError. */
  next(): PktLine | undefined {
    if (this.pendingLength < 0) {
      if (this.size < 4) return undefined;
      this.pendingLength = parsePktLength(this.peekPrefix());
    }
    const length = this.pendingLength;
    if (length < 4) {
      this.take(4);
      this.pendingLength = -1;
      return special(length);
    }
    if (this.size < length) return undefined;
    this.pendingLength = -1;
    return { kind: "data", payload: this.take(length).subarray(4) };
  }

  /** Whatever is left over: bytes of an incomplete packet. */
  remainder(): Buffer {
    this.pendingLength = -1;
    return this.take(this.size);
  }

  private peekPrefix(): Buffer {
    const first = this.chunks[0] as Buffer;
    if (first.length >= 4) return first.subarray(0, 4);
    const out = Buffer.alloc(4);
    let filled = 0;
    for (const chunk of this.chunks) {
      const n = chunk.copy(out, filled, 0, Math.min(chunk.length, 4 - filled));
      filled += n;
      if (filled === 4) break;
    }
    return out;
  }

  private take(n: number): Buffer {
    const parts: Buffer[] = [];
    let need = n;
    while (need > 0) {
      const head = this.chunks[0] as Buffer;
      if (head.length <= need) {
        parts.push(head);
        this.chunks.shift();
        need -= head.length;
      } else {
        parts.push(head.subarray(0, need));
        this.chunks[0] = head.subarray(need);
        need = 0;
      }
    }
    this.size -= n;
    return parts.length === 1 ? (parts[0] as Buffer) : Buffer.concat(parts, n);
  }
}

/** Decodes a complete buffer; `rest` holds the bytes of a trailing incomplete packet. */
export function decodePktLines(data: Uint8Array): { packets: PktLine[]; rest: Buffer } {
  const parser = new PktLineParser();
  parser.feed(data);
  const packets: PktLine[] = [];
  for (let p = parser.next(); p; p = parser.next()) packets.push(p);
  return { packets, rest: parser.remainder() };
}

/**
 * A stream of bytes in, PktLine objects out. Ending the input in the middle of a
 * packet is an error, as is any malformed length.
 */
export class PktLineDecoder extends Transform {
  private readonly parser = new PktLineParser();

  constructor() {
    super({ readableObjectMode: true });
  }

  override _transform(chunk: Buffer, _encoding: BufferEncoding, callback: TransformCallback): void {
    try {
      this.parser.feed(chunk);
      for (let p = this.parser.next(); p; p = this.parser.next()) this.push(p);
      callback();
    } catch (err) {
      callback(err as Error);
    }
  }

  override _flush(callback: TransformCallback): void {
    const left = this.parser.buffered;
    callback(left > 0 ? new PktLineError(`unexpected EOF: ${left} bytes of an incomplete pkt-line`) : null);
  }
}
