// Plumbing between gRPC streams and a git process, with back-pressure both ways:
// request messages are pulled only as fast as git's stdin takes them (grpc-js then
// stops reading from HTTP/2, so the client is flow-controlled), and git's output is
// read only as fast as the call can send it.
import type { Readable, Writable } from "node:stream";
import type * as grpc from "@grpc/grpc-js";
import { toServiceError } from "../../../shared/grpc/errors.js";

/**
 * A bidi handler from an async function that sends its own responses; resolving ends
 * the call with OK, throwing ends it with the error's status.
 */
export function bidi<Req, Res>(
  fn: (call: grpc.ServerDuplexStream<Req, Res>) => Promise<void>,
): grpc.handleBidiStreamingCall<Req, Res> {
  return (call) => {
    fn(call).then(
      () => {
        if (!call.cancelled) call.end();
      },
      (err: unknown) => {
        // grpc-js turns an "error" event into the call's final status.
        if (!call.cancelled) call.emit("error", toServiceError(err));
      },
    );
  };
}

interface WritableCall<Res> {
  write(message: Res): boolean;
  readonly cancelled: boolean;
  on(event: "drain" | "cancelled" | "close", listener: () => void): unknown;
  off(event: "drain" | "cancelled" | "close", listener: () => void): unknown;
}

/** Sends one response; resolves once the call can take more (or is gone). */
export function sendMessage<Res>(call: WritableCall<Res>, message: Res): Promise<void> {
  if (call.cancelled || call.write(message)) return Promise.resolve();
  return new Promise<void>((resolve) => {
    const done = () => {
      call.off("drain", done);
      call.off("cancelled", done);
      call.off("close", done);
      resolve();
    };
    call.on("drain", done);
    call.on("cancelled", done);
    call.on("close", done);
  });
}

function waitDrain(stream: Writable): Promise<void> {
  return new Promise<void>((resolve) => {
    const done = () => {
      stream.off("drain", done);
      stream.off("close", done);
      stream.off("error", done);
      resolve();
    };
    stream.on("drain", done);
    stream.on("close", done);
    stream.on("error", done);
  });
}

/**
 * Copies the payload of each remaining request message into git's stdin and ends it
 * when the client half-closes. Stops quietly when git stops reading (it exited) or
 * the client goes away; git then sees EOF. `observe` sees every byte on its way.
 */
export async function pumpRequestsToStdin<Req>(
  requests: AsyncIterator<Req>,
  payload: (request: Req) => Uint8Array,
  stdin: Writable,
  observe?: (chunk: Buffer) => void,
): Promise<void> {
  try {
    for (;;) {
      if (stdin.destroyed || stdin.writableEnded) return;
      const next = await requests.next();
      if (next.done) break;
      const data = payload(next.value);
      if (data.length === 0) continue;
      const chunk = Buffer.from(data.buffer, data.byteOffset, data.byteLength);
      observe?.(chunk);
      if (!stdin.write(chunk)) await waitDrain(stdin);
    }
  } catch {
    // The client cancelled or its stream broke: end git's input all the same.
  }
  if (!stdin.destroyed && !stdin.writableEnded) stdin.end();
}

/** Sends everything `output` yields, one response per chunk, honouring back-pressure. */
export async function pumpOutput(output: Readable, send: (chunk: Buffer) => Promise<void>): Promise<void> {
  for await (const chunk of output) await send(chunk as Buffer);
}

/**
 * Reads a call's request messages one at a time. Unlike the stream's own async
 * iterator, it never destroys the call when it stops early or sees an error: the
 * call must live on to send its final status (after an error, grpc-js sends the
 * status only when the writable side finishes, which a destroyed call never does).
 */
export function requestReader<Req>(call: Readable): AsyncIterator<Req> {
  let failure: Error | undefined;
  call.on("error", (err: Error) => {
    failure ??= err;
  });
  const settled = () => call.readableEnded || call.destroyed || failure !== undefined;
  const nextEvent = () =>
    new Promise<void>((resolve) => {
      const events = ["readable", "end", "error", "close"] as const;
      const done = () => {
        for (const e of events) call.off(e, done);
        resolve();
      };
      for (const e of events) call.on(e, done);
    });
  return {
    async next(): Promise<IteratorResult<Req>> {
      for (;;) {
        const message = call.read() as Req | null;
        if (message !== null) return { value: message, done: false };
        if (failure) throw failure;
        if (settled()) return { value: undefined, done: true };
        await nextEvent();
      }
    },
  };
}

/** The first request of a client stream; upstream answers an empty stream with EOF. */
export async function firstRequest<Req>(requests: AsyncIterator<Req>): Promise<Req | undefined> {
  const first = await requests.next();
  return first.done ? undefined : first.value;
}

/**
 * Copies `source` (the client's data from a sidechannel) into git's stdin and ends it
 * at the source's end. A broken source ends stdin too: git then reports the client
 * hung up, as it would on a dropped connection.
 */
export function pipeToStdin(source: Readable, stdin: Writable, observe?: (chunk: Buffer) => void): Promise<void> {
  return new Promise<void>((resolve) => {
    const finish = () => {
      source.unpipe(stdin);
      if (!stdin.destroyed && !stdin.writableEnded) stdin.end();
      resolve();
    };
    if (observe) source.on("data", observe);
    source.once("end", finish);
    source.once("error", finish);
    source.pipe(stdin, { end: false });
  });
}

/** Writes to a raw stream (a sidechannel); resolves once it can take more, or is gone. */
export function writeChunk(stream: Writable, chunk: Buffer): Promise<void> {
  if (stream.destroyed || stream.writableEnded) return Promise.resolve();
  if (stream.write(chunk)) return Promise.resolve();
  return waitDrain(stream);
}
