// Commit trailers as printed by `git show --format=%(trailers:unfold,separator=%x00)`:
// "Key: value\0Key: value". Limits follow upstream so one huge message cannot make a
// response huge: at most 64 trailers, parsing stops at a key over 128 or a value over
// 512 bytes.
import { create } from "@bufbuild/protobuf";
import { type CommitTrailer, CommitTrailerSchema } from "../../../gen/shared_pb.js";
import { copyBytes } from "./bytes.js";

const MAX_TRAILERS = 64;
const MAX_KEY_SIZE = 128;
const MAX_VALUE_SIZE = 512;

function isSpace(b: number): boolean {
  return b === 0x20 || (b >= 0x09 && b <= 0x0d);
}

function trimSpace(bytes: Uint8Array): Uint8Array {
  let start = 0;
  let end = bytes.length;
  while (start < end && isSpace(bytes[start] as number)) start++;
  while (end > start && isSpace(bytes[end - 1] as number)) end--;
  return bytes.subarray(start, end);
}

export function parseTrailers(input: Uint8Array): CommitTrailer[] {
  const trailers: CommitTrailer[] = [];
  let start = 0;
  while (start < input.length && trailers.length < MAX_TRAILERS) {
    let end = input.indexOf(0, start);
    if (end < 0) end = input.length;
    const record = input.subarray(start, end);
    const colon = record.indexOf(0x3a /* : */);
    if (colon > 0) {
      const key = record.subarray(0, colon);
      const value = trimSpace(record.subarray(colon + 1));
      if (key.length > MAX_KEY_SIZE || value.length > MAX_VALUE_SIZE) break;
      trailers.push(create(CommitTrailerSchema, { key: copyBytes(key), value: copyBytes(value) }));
    }
    start = end + 1;
  }
  return trailers;
}
