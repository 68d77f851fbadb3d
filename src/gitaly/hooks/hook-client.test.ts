import { describe, expect, it } from "vitest";
import { bearerToken } from "../../shared/auth/v2-token.js";
import { internalAuthorization, MessageDeframer } from "./hook-client.js";

describe("hook program gRPC client helpers", () => {
  it("mints the same v2 token as the shared client code", () => {
    const now = new Date(1_700_000_000_123);
    expect(internalAuthorization("s3cret", now)).toBe(bearerToken("s3cret", now));
  });

  it("deframes messages split across chunks", () => {
    const frame = (body: string) => {
      const b = Buffer.from(body);
      const header = Buffer.alloc(5);
      header.writeUInt32BE(b.length, 1);
      return Buffer.concat([header, b]);
    };
    const bytes = Buffer.concat([frame("one"), frame(""), frame("three")]);
    const d = new MessageDeframer();
    const out = [...d.push(bytes.subarray(0, 6)), ...d.push(bytes.subarray(6, 11)), ...d.push(bytes.subarray(11))];
    expect(out.map((b) => b.toString())).toEqual(["one", "", "three"]);
    expect(d.pending).toBe(0);
    expect(() => new MessageDeframer().push(Buffer.from([1, 0, 0, 0, 0]))).toThrow("compressed");
  });
});
