// Re-chunking of byte streams into gRPC-sized messages: Gitaly's byte streams use
// 128 KiB messages; much smaller ones cost throughput, larger ones memory.

export const FRAME_SIZE = 128 * 1024;

/** Yields `source`'s bytes in frames of exactly `size` bytes, the last one shorter. */
export async function* frames(source: AsyncIterable<Uint8Array>, size = FRAME_SIZE): AsyncGenerator<Buffer> {
  if (!(size > 0)) throw new RangeError(`frame size must be positive, got ${size}`);
  let parts: Buffer[] = [];
  let buffered = 0;
  for await (const chunk of source) {
    let rest = Buffer.isBuffer(chunk) ? chunk : Buffer.from(chunk.buffer, chunk.byteOffset, chunk.byteLength);
    while (buffered + rest.length >= size) {
      const take = size - buffered;
      // Whole frames inside one chunk are passed on as views, without a copy.
      const frame = buffered === 0 ? rest.subarray(0, take) : Buffer.concat([...parts, rest.subarray(0, take)], size);
      parts = [];
      buffered = 0;
      rest = rest.subarray(take);
      yield frame;
    }
    if (rest.length > 0) {
      parts.push(rest);
      buffered += rest.length;
    }
  }
  if (buffered > 0) yield Buffer.concat(parts, buffered);
}
