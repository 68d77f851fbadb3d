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

/** Two in-memory transports of one kind, each delivering what it is written to the other. */
function connectedPair<T extends Duplex & { peer: T | undefined }>(make: () => T): [T, T] {
  const a = make();
  const b = make();
  a.peer = b;
  b.peer = a;
  return [a, b];
}

const tricklePair = () => connectedPair(() => new Trickle());
const memoryPair = () => connectedPair(() => new Recorder());

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
    const [a, b] = memoryPair();
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

/**
 * origin --(a)--> relay --(b)--> sink: every stream the origin opens is spliced by the
 * relay into a stream it opens to the sink, which the relay ends once the splice is done.
 */
function relayTopology(window?: number) {
  const [originSide, relayIn] = memoryPair();
  const [relayOut, sinkSide] = memoryPair();
  const sinkStreams: YamuxStream[] = [];
  const splices: Promise<void>[] = [];
  const relayTargets: YamuxStream[] = [];
  new YamuxSession(sinkSide, { role: "server", onStream: (s) => sinkStreams.push(s) });
  const toSink = new YamuxSession(relayOut, { role: "client" });
  const relay = new YamuxSession(relayIn, {
    role: "server",
    ...(window === undefined ? {} : { maxStreamWindow: window }),
    onStream: (source) => {
      const target = toSink.open();
      relayTargets.push(target);
      const done = source.spliceTo(target).then(() => {
        target.end();
      });
      done.catch(() => {});
      splices.push(done);
    },
  });
  const origin = new YamuxSession(originSide, { role: "client" });
  return { origin, relay, toSink, sinkStreams, splices, relayTargets };
}

const nextTurn = () => new Promise((resolve) => setImmediate(resolve));

/** The same sessions as relayTopology(), but the test splices (or not) by hand. */
function manualRelay() {
  const [originSide, relayIn] = memoryPair();
  const [relayOut, sinkSide] = memoryPair();
  const sinkStreams: YamuxStream[] = [];
  new YamuxSession(sinkSide, { role: "server", onStream: (s) => sinkStreams.push(s) });
  const toSink = new YamuxSession(relayOut, { role: "client" });
  const sources: YamuxStream[] = [];
  new YamuxSession(relayIn, { role: "server", onStream: (s) => sources.push(s) });
  const origin = new YamuxSession(originSide, { role: "client" });
  return { origin, toSink, sources, sinkStreams };
}

describe("yamux splice", () => {
  it("relays a stream into another session byte for byte, and resolves at the source's FIN", async () => {
    const { origin, sinkStreams, splices } = relayTopology();
    const stream = origin.open();
    const payload = randomBytes(5 * 1024 * 1024 + 3);
    stream.end(payload);
    while (sinkStreams.length === 0) await nextTurn();
    const received = await readAll(sinkStreams[0] as YamuxStream);
    expect(received.length).toBe(payload.length);
    expect(sha(received)).toBe(sha(payload));
    await expect(splices[0]).resolves.toBeUndefined();
  });

  it("holds the origin back while the final reader does not read", async () => {
    const { origin, sinkStreams } = relayTopology();
    const stream = origin.open();
    const payload = randomBytes(8 * 1024 * 1024);
    let written = false;
    stream.end(payload, () => {
      written = true;
    });
    while (sinkStreams.length === 0) await nextTurn();
    const sink = sinkStreams[0] as YamuxStream;
    sink.pause();
    for (let i = 0; i < 20; i++) await nextTurn();
    // Windows of 256 KiB at both hops bound what is in flight: nowhere near 8 MiB.
    expect(written).toBe(false);
    expect(stream.writableLength).toBeGreaterThan(payload.length - 2 * 1024 * 1024);
    const received = readAll(sink);
    sink.resume();
    expect(sha(await received)).toBe(sha(payload));
    expect(written).toBe(true);
  });

  it("sends bytes that arrived before the splice first", async () => {
    const { origin, toSink, sources, sinkStreams } = manualRelay();
    const stream = origin.open();
    stream.write("head:");
    while (sources.length === 0) await nextTurn();
    const source = sources[0] as YamuxStream;
    // Part of the early bytes taken into the Readable buffer, part still queued in the session.
    source.once("readable", () => {});
    for (let i = 0; i < 5; i++) await nextTurn();
    stream.end("tail");
    await nextTurn();
    const target = toSink.open();
    const spliced = source.spliceTo(target);
    await spliced;
    target.end();
    while (sinkStreams.length === 0) await nextTurn();
    expect((await readAll(sinkStreams[0] as YamuxStream)).toString()).toBe("head:tail");
  });

  it("sends what the target was given before the splice first, even writes still waiting for window", async () => {
    const { origin, toSink, sources, sinkStreams } = manualRelay();

    const target = toSink.open();
    while (sinkStreams.length === 0) {
      target.write(Buffer.alloc(0));
      await nextTurn();
    }
    const sink = sinkStreams[0] as YamuxStream;
    sink.pause();
    // More than the sink's window: the first write waits for window, the second behind it.
    const first = randomBytes(INITIAL_STREAM_WINDOW + 100_000);
    target.write(first);
    target.write("second");
    const stream = origin.open();
    stream.end("tail");
    while (sources.length === 0) await nextTurn();
    const spliced = (sources[0] as YamuxStream).spliceTo(target);
    for (let i = 0; i < 5; i++) await nextTurn();
    const received = readAll(sink);
    sink.resume();
    await spliced;
    target.end();
    const got = await received;
    expect(got.length).toBe(first.length + "secondtail".length);
    expect(sha(got.subarray(0, first.length))).toBe(sha(first));
    expect(got.subarray(first.length).toString()).toBe("secondtail");
  });

  it("rejects when the target is reset, and when the source is reset", async () => {
    const first = relayTopology();
    const a = first.origin.open();
    a.write(randomBytes(64 * 1024));
    while (first.sinkStreams.length === 0) await nextTurn();
    (first.sinkStreams[0] as YamuxStream).destroy();
    await expect(first.splices[0]).rejects.toThrow(/reset/);

    const second = relayTopology();
    const b = second.origin.open();
    b.write(randomBytes(64 * 1024));
    while (second.splices.length === 0) await nextTurn();
    b.destroy();
    await expect(second.splices[0]).rejects.toThrow(/reset/);
  });

  it("refuses a second splice of the same stream or into the same target", async () => {
    const [x, y] = memoryPair();
    new YamuxSession(y, { role: "server", onStream: () => {} });
    const session = new YamuxSession(x, { role: "client" });
    const [s1, s2, s3] = [session.open(), session.open(), session.open()];
    const pending = s1.spliceTo(s2);
    await expect(s1.spliceTo(s3)).rejects.toThrow(/already spliced/);
    await expect(s3.spliceTo(s2)).rejects.toThrow(/already receives/);
    await expect(s3.spliceTo(s3)).rejects.toThrow(/itself/);
    pending.catch(() => {});
    session.close();
    await expect(pending).rejects.toThrow();
  });
});
