// Plumbing shared by the read services (commit, ref, blob): splitting byte streams and
// item lists into messages the way upstream does, cancellation, and error wrapping.
import { internal, RpcError } from "../../../shared/grpc/errors.js";

/** Upstream's streamio.WriteBufferSize: the most bytes one response carries. */
export const STREAM_CHUNK_SIZE = 128 * 1024;
/** Upstream's chunk.maxMessageSize: item lists are split before a message reaches it. */
export const MAX_CHUNKED_MESSAGE_SIZE = 1024 * 1024;
/** Upstream's lines.ItemsPerMessage: refs per message in listing RPCs. */
export const ITEMS_PER_MESSAGE = 20;

/** The first `length` bytes of `data` in slices of at most STREAM_CHUNK_SIZE. */
export function* byteChunks(data: Uint8Array, length = data.length): Generator<Uint8Array> {
  const end = Math.min(length, data.length);
  for (let pos = 0; pos < end; pos += STREAM_CHUNK_SIZE) {
    yield data.subarray(pos, Math.min(end, pos + STREAM_CHUNK_SIZE));
  }
}

/**
 * Collects items into batches whose encoded size stays below MAX_CHUNKED_MESSAGE_SIZE.
 * `push` returns a full batch when the new item would not fit; `flush` the rest.
 */
export class MessageChunker<T> {
  private items: T[] = [];
  private size = 0;

  constructor(
    private readonly sizeOf: (item: T) => number,
    private readonly maxSize = MAX_CHUNKED_MESSAGE_SIZE,
  ) {}

  push(item: T): T[] | undefined {
    const itemSize = this.sizeOf(item);
    let full: T[] | undefined;
    if (this.items.length > 0 && this.size + itemSize >= this.maxSize) full = this.take();
    this.items.push(item);
    this.size += itemSize;
    return full;
  }

  flush(): T[] | undefined {
    return this.items.length > 0 ? this.take() : undefined;
  }

  private take(): T[] {
    const items = this.items;
    this.items = [];
    this.size = 0;
    return items;
  }
}

/** An AbortSignal that fires when the client cancels the call or its deadline passes. */
export function callSignal(call: { once(event: "cancelled", listener: () => void): unknown }): AbortSignal {
  const controller = new AbortController();
  call.once("cancelled", () => controller.abort(new Error("call cancelled")));
  return controller.signal;
}

/** gRPC errors pass through; anything else becomes Internal "<context>: <message>". */
export function asRpcError(err: unknown, context: string): RpcError {
  if (err instanceof RpcError) return err;
  return internal(`${context}: ${err instanceof Error ? err.message : String(err)}`, err);
}
