import { createHash, randomBytes } from "node:crypto";
import { once } from "node:events";
import { connect, createServer, type Server, type Socket } from "node:net";
import { Duplex } from "node:stream";
import { afterEach, describe, expect, it } from "vitest";
import { INITIAL_STREAM_WINDOW, YamuxSession, type YamuxStream } from "./yamux-session.js";

const sha = (b: Buffer) => createHash("sha256").update(b).digest("hex");

/** Resolves on 'close' whether or not the stream failed (events.once would reject on 'error'). */
const closed = (stream: Duplex) => new Promise<void>((resolve) => stream.once("close", () => resolve()));

function readAll(stream: YamuxStream): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    stream.on("data", (c: Buffer) => chunks.push(c));
    stream.once("end", () => resolve(Buffer.concat(chunks)));
    stream.once("close", () => {
      if (!stream.readableEnded) reject(stream.errored ?? new Error("closed before end"));
    });
  });
}

/** Two sockets connected over loopback TCP. */
async function socketPair(): Promise<{ client: Socket; server: Socket; listener: Server }> {
  const listener = createServer();
  listener.listen(0, "127.0.0.1");
  await once(listener, "listening");
  const address = listener.address();
  if (!address || typeof address === "string") throw new Error("no address");
  const accepted = once(listener, "connection") as Promise<[Socket]>;
  const client = connect(address.port, "127.0.0.1");
  await once(client, "connect");
  const [server] = await accepted;
  return { client, server, listener };
}

/**
 * An in-memory duplex pair that delivers what is written in pieces of at most
 * three bytes, so every frame header and payload is split across reads.
 */
class Trickle extends Duplex {
  peer: Trickle | undefined;
  override _read(): void {}
  override _write(chunk: Buffer, _encoding: BufferEncoding, callback: () => void): void {
    for (let i = 0; i < chunk.length; i += 3) this.peer?.push(chunk.subarray(i, i + 3));
    callback();
  }
  override _final(callback: () => void): void {
    this.peer?.push(null);
    callback();
  }
}

/**
 * An in-memory duplex pair with writev, as sockets have: records how the session hands
 * bytes to its transport (one entry per _write or _writev call, with its chunk count).
 */
class Recorder extends Duplex {
  peer: Recorder | undefined;
  readonly batches: number[] = [];
  override _read(): void {}
  override _write(chunk: Buffer, _encoding: BufferEncoding, callback: () => void): void {
    this.batches.push(1);
    this.peer?.push(chunk);
    callback();
  }
  override _writev(chunks: { chunk: Buffer }[], callback: () => void): void {
    this.batches.push(chunks.length);
    this.peer?.push(Buffer.concat(chunks.map((c) => c.chunk)));
    callback();
  }
  override _final(callback: () => void): void {
    this.peer?.push(null);
    callback();
  }
}

function tricklePair(): [Trickle, Trickle] {
  const a = new Trickle();
  const b = new Trickle();
  a.peer = b;
  b.peer = a;
  return [a, b];
}

function header(type: number, flags: number, id: number, length: number): Buffer {
  const h = Buffer.alloc(12);
  h.writeUInt8(0, 0);
  h.writeUInt8(type, 1);
  h.writeUInt16BE(flags, 2);
  h.writeUInt32BE(id, 4);
  h.writeUInt32BE(length, 8);
  return h;
}

/** Reads exactly n bytes from a raw socket. */
async function readBytes(socket: Socket, n: number): Promise<Buffer> {
  const chunks: Buffer[] = [];
  let total = 0;
  while (total < n) {
    const chunk = socket.read(Math.min(n - total, socket.readableLength || 1)) as Buffer | null;
    if (chunk) {
      chunks.push(chunk);
      total += chunk.length;
    } else {
      await once(socket, "readable");
    }
  }
  return Buffer.concat(chunks);
}

const cleanups: (() => void)[] = [];
afterEach(() => {
  for (const fn of cleanups.splice(0)) fn();
});

describe("yamux session", () => {
  it("echoes several MiB through default-size windows over TCP, in both directions", async () => {
    const { client, server, listener } = await socketPair();
    cleanups.push(() => {
      client.destroy();
      server.destroy();
      listener.close();
    });
    new YamuxSession(server, {
      role: "server",
      onStream: (stream) => {
        // Echo: read everything, then answer with it reversed and half-close.
        readAll(stream).then((data) => stream.end(Buffer.from(data).reverse()));
      },
    });
    const session = new YamuxSession(client, { role: "client" });
    const payload = randomBytes(3 * 1024 * 1024 + 17);
    const streams = [session.open(), session.open()];
    const replies = streams.map((s) => readAll(s));
    for (const s of streams) s.end(payload);
    const expected = sha(Buffer.from(payload).reverse());
    for (const reply of await Promise.all(replies)) expect(sha(reply)).toBe(expected);
    expect(streams.map((s) => s.id)).toEqual([1, 3]);
  });

  it("survives every frame being split across reads", async () => {
    const [a, b] = tricklePair();
    new YamuxSession(b, {
      role: "server",
      maxStreamWindow: 16 * 1024 * 1024,
      onStream: (stream) => {
        readAll(stream).then((data) => stream.end(data.toString("latin1").toUpperCase()));
      },
    });
    const session = new YamuxSession(a, { role: "client" });
    const stream = session.open();
    const reply = readAll(stream);
    const text = "abcdefghij".repeat(40_000);
    stream.end(text);
    const got = (await reply).toString("latin1");
    expect(got.length).toBe(text.length);
    expect(got === text.toUpperCase()).toBe(true);
    session.close();
  });

  it("resets the peer's stream when destroyed before end, and refuses streams on request", async () => {
    const [a, b] = tricklePair();
    const serverSide: YamuxStream[] = [];
    new YamuxSession(b, {
      role: "server",
      onStream: (stream) => {
        if (serverSide.length > 0) stream.destroy();
        else serverSide.push(stream);
      },
    });
    const session = new YamuxSession(a, { role: "client" });
    const first = session.open();
    first.write("x");
    await new Promise((r) => setImmediate(r));
    const accepted = serverSide[0];
    if (!accepted) throw new Error("first stream was not accepted");
    const acceptedClosed = closed(accepted);
    first.destroy();
    await acceptedClosed;
    expect(accepted.readableEnded).toBe(false);
    expect((accepted.errored as NodeJS.ErrnoException | null)?.code).toBe("ECONNRESET");

    const refused = session.open();
    refused.write("y");
    await closed(refused);
    expect((refused.errored as NodeJS.ErrnoException | null)?.code).toBe("ECONNRESET");
    session.close();
  });

  it("keeps granting window to a peer that still writes after we closed our side", async () => {
    const { client, server, listener } = await socketPair();
    cleanups.push(() => {
      client.destroy();
      server.destroy();
      listener.close();
    });
    new YamuxSession(server, {
      role: "server",
      onStream: (stream) => {
        // Answer at once and let go: no reading, no reset.
        stream.end("bye", () => stream.destroy());
      },
    });
    const session = new YamuxSession(client, { role: "client" });
    const stream = session.open();
    const reply = readAll(stream);
    // Several windows' worth: this only completes if the server keeps granting window.
    const big = randomBytes(8 * INITIAL_STREAM_WINDOW);
    await new Promise<void>((resolve, reject) => stream.write(big, (err) => (err ? reject(err) : resolve())));
    stream.end();
    expect((await reply).toString()).toBe("bye");
    await closed(stream);
    expect(stream.errored).toBeNull();
  });

  it("speaks hashicorp/yamux's wire format", async () => {
    const { client: raw, server, listener } = await socketPair();
    cleanups.push(() => {
      raw.destroy();
      server.destroy();
      listener.close();
    });
    const received: Buffer[] = [];
    new YamuxSession(server, {
      role: "server",
      maxStreamWindow: 1024 * 1024,
      onStream: (stream) => {
        stream.on("data", (c: Buffer) => {
          received.push(c);
          stream.write("world");
        });
      },
    });
    // Open stream 1 the way Go does: a window update with SYN granting the extra window.
    raw.write(header(1, 1, 1, 1024 * 1024 - INITIAL_STREAM_WINDOW));
    expect(await readBytes(raw, 12)).toEqual(header(1, 2, 1, 1024 * 1024 - INITIAL_STREAM_WINDOW));
    raw.write(Buffer.concat([header(0, 0, 1, 5), Buffer.from("hello")]));
    expect(await readBytes(raw, 17)).toEqual(Buffer.concat([header(0, 0, 1, 5), Buffer.from("world")]));
    expect(Buffer.concat(received).toString()).toBe("hello");
    // Pings are echoed with ACK and the same opaque value.
    raw.write(header(2, 1, 0, 0xdeadbeef));
    expect(await readBytes(raw, 12)).toEqual(header(2, 2, 0, 0xdeadbeef));
    // Data beyond the granted window is a protocol error: GoAway(1), then the connection closes.
    raw.write(header(0, 0, 1, 2 * 1024 * 1024));
    expect(await readBytes(raw, 12)).toEqual(header(3, 0, 0, 1));
    await once(raw, "close");
  });

  it("hands the frames of one turn of the event loop to the transport in one write", async () => {
    const a = new Recorder();
    const b = new Recorder();
    a.peer = b;
    b.peer = a;
    const received: Promise<Buffer>[] = [];
    new YamuxSession(b, {
      role: "server",
      onStream: (stream) => received.push(readAll(stream)),
    });
    const session = new YamuxSession(a, { role: "client" });
    const stream = session.open();
    const pieces = Array.from({ length: 20 }, (_, i) => Buffer.alloc(1000, i));
    for (const piece of pieces) stream.write(piece);
    stream.end();
    await new Promise((resolve) => stream.once("finish", resolve));
    await new Promise((resolve) => setImmediate(resolve));
    // SYN, 20 Data frames (header and payload each) and the FIN, in one writev.
    expect(a.batches).toEqual([1 + 20 * 2 + 1]);
    await new Promise((resolve) => setImmediate(resolve));
    expect(received).toHaveLength(1);
    expect(sha(await (received[0] as Promise<Buffer>))).toBe(sha(Buffer.concat(pieces)));
    session.close();
  });

  it("aborts open streams when the connection drops", async () => {
    const { client, server, listener } = await socketPair();
    cleanups.push(() => listener.close());
    const serverStreams: YamuxStream[] = [];
    new YamuxSession(server, { role: "server", onStream: (s) => serverStreams.push(s) });
    const session = new YamuxSession(client, { role: "client" });
    const stream = session.open();
    stream.write("x");
    const streamClosed = closed(stream);
    server.destroy();
    await streamClosed;
    expect(session.closed).toBe(true);
    expect(stream.errored).not.toBeNull();
    expect(() => session.open()).toThrow(/session shutdown/);
  });
});
