import { createHash } from "node:crypto";
import { describe, expect, it } from "vitest";
import { Checksum, checksumOfShowRef, ZERO_CHECKSUM } from "./checksum.js";

const sha1 = (s: string) => createHash("sha1").update(s).digest("hex");

describe("repository checksum", () => {
  it("is 40 zeros without refs", () => {
    expect(checksumOfShowRef("")).toBe(ZERO_CHECKSUM);
  });

  it("is the SHA-1 of the only counted line", () => {
    const line = "1352fbeae87e8ded119961bf00ae3f4b0688e4a0 refs/heads/main";
    expect(checksumOfShowRef(`${line}\n`)).toBe(sha1(line));
  });

  it("XORs lines, ignores order, and skips refs outside the allowed namespaces", () => {
    const a = "1352fbeae87e8ded119961bf00ae3f4b0688e4a0 HEAD";
    const b = "26b04600a30ad2bd55e6a69acf748cccc3d074a5 refs/tags/v1.0.0";
    const ignored = "26b04600a30ad2bd55e6a69acf748cccc3d074a5 refs/pipelines/1";
    const xor = (BigInt(`0x${sha1(a)}`) ^ BigInt(`0x${sha1(b)}`)).toString(16);
    const expected = xor.length % 2 ? `0${xor}` : xor;
    expect(checksumOfShowRef([a, b, ignored].join("\n"))).toBe(expected);
    expect(checksumOfShowRef([ignored, b, a].join("\n"))).toBe(expected);
  });

  it("drops leading zero bytes like upstream's big.Int encoding", () => {
    // Two lines whose hashes share the first byte XOR to a value with a zero first byte.
    const lines: string[] = [];
    const byFirstByte = new Map<string, string>();
    for (let i = 0; lines.length < 2; i++) {
      const line = `${i.toString(16).padStart(40, "0")} refs/heads/b${i}`;
      const first = sha1(line).slice(0, 2);
      const other = byFirstByte.get(first);
      if (other) lines.push(other, line);
      else byFirstByte.set(first, line);
    }
    const c = new Checksum();
    for (const l of lines) c.addLine(l);
    const out = c.toString();
    expect(out.length).toBeLessThan(40);
    expect(out.length % 2).toBe(0);
    expect(out.startsWith("00")).toBe(false);
  });
});
