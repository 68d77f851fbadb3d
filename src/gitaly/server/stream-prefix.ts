// Reading the first bytes of a connection or stream before deciding who owns it:
// listenmux peeks at the magic, sidechannels read "ok" and their ids. Exactly the
// prefix is consumed; a caller that hands the stream on unshift()s it back.
import type { Readable } from "node:stream";

export type PrefixFailure = "eof" | "timeout" | "error";

export class PrefixReadError extends Error {
  readonly reason: PrefixFailure;
  /** What arrived before the failure. */
  readonly received: Buffer;

  constructor(reason: PrefixFailure, received: Buffer, cause?: unknown) {
    // Go's io.ReadFull wording, which upstream messages embed.
    const message =
      reason === "timeout"
        ? "i/o deadline reached"
        : reason === "eof"
          ? received.length === 0
            ? "EOF"
            : "unexpected EOF"
          : cause instanceof Error
            ? cause.message
            : "read failed";
    super(message, { cause });
    this.name = "PrefixReadError";
    this.reason = reason;
    this.received = received;
  }
}

/**
 * Resolves with the first `length` bytes once they have arrived. Rejects with PrefixReadError when the stream ends,
 * fails or stays silent for `timeoutMs`; it does not destroy the stream.
 */
export function readPrefix(readable: Readable, length: number, timeoutMs: number): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    let total = 0;
    let settled = false;
    const received = () => Buffer.concat(chunks, total);
    const cleanup = () => {
      settled = true;
      clearTimeout(timer);
      readable.off("readable", onReadable);
      readable.off("end", onEnd);
      readable.off("close", onEnd);
      readable.off("error", onError);
    };
    const fail = (reason: PrefixFailure, cause?: unknown) => {
      if (settled) return;
      cleanup();
      reject(new PrefixReadError(reason, received(), cause));
    };
    const onReadable = () => {
      if (settled) return;
      while (total < length) {
        // Never more than asked for: what follows stays buffered in the stream, and
        // its end is not signalled before that is read.
        const chunk = readable.read(length - total) as Buffer | null;
        if (chunk === null) return;
        chunks.push(chunk);
        total += chunk.length;
      }
      cleanup();
      resolve(received());
    };
    const onEnd = () => fail("eof");
    const onError = (err: Error) => fail("error", err);
    const timer = setTimeout(() => fail("timeout"), timeoutMs);
    timer.unref();
    if (readable.destroyed || readable.readableEnded) {
      fail(readable.errored ? "error" : "eof", readable.errored);
      return;
    }
    readable.on("readable", onReadable);
    readable.on("end", onEnd);
    readable.on("close", onEnd);
    readable.on("error", onError);
    // Bytes may already be buffered, in which case no further 'readable' may come.
    onReadable();
  });
}
