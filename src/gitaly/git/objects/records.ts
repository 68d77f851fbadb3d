// Streaming the output of a git command record by record (lines, NUL-separated
// entries), so listings of many refs or commits never sit in memory whole and a caller
// that stops early (pagination) stops git too.
import type { Readable } from "node:stream";
import type { GitProcess } from "../command.js";

/** Splits `stream` at `delimiter`; a final record without delimiter is yielded too. */
export async function* splitRecords(stream: Readable, delimiter = 0x0a): AsyncGenerator<Buffer> {
  let pending: Buffer = Buffer.alloc(0);
  for await (const chunk of stream as AsyncIterable<Buffer>) {
    let data = pending.length > 0 ? Buffer.concat([pending, chunk]) : chunk;
    let start = 0;
    for (;;) {
      const end = data.indexOf(delimiter, start);
      if (end < 0) break;
      yield data.subarray(start, end);
      start = end + 1;
    }
    data = data.subarray(start);
    // Copy so the remainder does not pin the whole chunk.
    pending = Buffer.from(data);
  }
  if (pending.length > 0) yield pending;
}

/**
 * The records git prints, then its exit status: the generator throws git's
 * GitCommandError if it failed. Returning early (break) kills git instead.
 */
export async function* gitRecords(proc: GitProcess, delimiter = 0x0a): AsyncGenerator<Buffer> {
  let finished = false;
  try {
    yield* splitRecords(proc.stdout, delimiter);
    await proc.wait();
    finished = true;
  } finally {
    if (!finished) proc.kill();
  }
}
