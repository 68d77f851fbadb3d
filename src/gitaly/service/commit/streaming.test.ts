import { describe, expect, it } from "vitest";
import { decodeStdBase64, decodeToken, encodeToken, goJson } from "./page-token.js";
import { byteChunks, MessageChunker, STREAM_CHUNK_SIZE } from "./streaming.js";

describe("byteChunks", () => {
  it("cuts at 128 KiB and stops at the limit", () => {
    const data = Buffer.alloc(STREAM_CHUNK_SIZE * 2 + 5, 7);
    expect([...byteChunks(data)].map((c) => c.length)).toEqual([STREAM_CHUNK_SIZE, STREAM_CHUNK_SIZE, 5]);
    expect([...byteChunks(data, 10)].map((c) => c.length)).toEqual([10]);
    expect([...byteChunks(Buffer.alloc(0))]).toEqual([]);
  });
});

describe("MessageChunker", () => {
  it("starts a new batch before one would reach the size limit", () => {
    const chunker = new MessageChunker<number>((n) => n, 10);
    const batches: number[][] = [];
    for (const n of [4, 4, 1, 3, 9, 2]) {
      const full = chunker.push(n);
      if (full) batches.push(full);
    }
    const rest = chunker.flush();
    if (rest) batches.push(rest);
    expect(batches).toEqual([[4, 4, 1], [3], [9], [2]]);
    expect(chunker.flush()).toBeUndefined();
  });
});

describe("page tokens", () => {
  it("round-trip, escape like Go and fall back for foreign tokens", () => {
    expect(goJson({ file_name: "a<b>&c" })).toBe('{"file_name":"a\\u003cb\\u003e\\u0026c"}');
    const token = encodeToken({ file_name: "src/x", tree_oid: "abc" });
    expect(decodeToken(token, ["file_name", "tree_oid"])).toEqual({ file_name: "src/x", tree_oid: "abc" });
    expect(decodeToken("non-existent", ["file_name"])).toBeNull();
    expect(decodeToken(Buffer.from('"str"').toString("base64"), ["file_name"])).toBeNull();
    expect(decodeToken(Buffer.from('{"file_name":5}').toString("base64"), ["file_name"])).toBeNull();
    expect(decodeToken(Buffer.from("{}").toString("base64"), ["file_name"])).toEqual({ file_name: "" });
    expect(decodeStdBase64("YQ")).toBeNull();
    expect(decodeStdBase64("YR==")).toBeNull();
    expect(decodeStdBase64("YQ==")?.toString()).toBe("a");
  });
});
