import { Readable } from "node:stream";
import { describe, expect, it } from "vitest";
import {
  BAND_DATA,
  BAND_PROGRESS,
  decodePktLines,
  decodeSideband,
  encodePktLine,
  encodePktLines,
  encodeSideband,
  flushPkt,
  MAX_PKT_PAYLOAD,
  MAX_SIDEBAND_DATA,
  type PktLine,
  PktLineDecoder,
} from "./pktline.js";

async function decodeStream(chunks: Buffer[]): Promise<PktLine[]> {
  const out: PktLine[] = [];
  for await (const p of Readable.from(chunks).pipe(new PktLineDecoder())) out.push(p as PktLine);
  return out;
}

describe("pkt-line encoding", () => {
  it("prefixes the length, counting the prefix itself", () => {
    expect(encodePktLine("hello\n").toString()).toBe("000ahello\n");
    expect(encodePktLine("").toString()).toBe("0004");
    expect(flushPkt.toString()).toBe("0000");
  });

  it("refuses a payload that does not fit one packet, and splits it with encodePktLines", () => {
    const big = Buffer.alloc(MAX_PKT_PAYLOAD + 10, 0x61);
    expect(() => encodePktLine(big)).toThrow(/too large/);
    expect(encodePktLine(big.subarray(0, MAX_PKT_PAYLOAD)).subarray(0, 4).toString()).toBe("fff0");
    const { packets, rest } = decodePktLines(encodePktLines(big));
    expect(rest.length).toBe(0);
    expect(packets.map((p) => (p.kind === "data" ? p.payload.length : -1))).toEqual([MAX_PKT_PAYLOAD, 10]);
  });

  it("splits side-band data at 65515 bytes per packet, band byte first", () => {
    const data = Buffer.alloc(MAX_SIDEBAND_DATA * 2 + 1, 0x62);
    const { packets } = decodePktLines(encodeSideband(BAND_DATA, data));
    expect(packets).toHaveLength(3);
    const decoded = packets.map((p) => (p.kind === "data" ? decodeSideband(p.payload) : undefined));
    expect(decoded.map((d) => d?.band)).toEqual([1, 1, 1]);
    expect(Buffer.concat(decoded.map((d) => d?.data ?? Buffer.alloc(0))).equals(data)).toBe(true);
    expect(encodeSideband(BAND_PROGRESS, "x").toString("latin1")).toBe("0006\x02x");
  });
});

describe("pkt-line decoding", () => {
  it("recognises flush, delim and response-end", () => {
    const { packets, rest } = decodePktLines(Buffer.from("0008abcd000000010002"));
    expect(packets).toEqual([
      { kind: "data", payload: Buffer.from("abcd") },
      { kind: "flush" },
      { kind: "delim" },
      { kind: "response-end" },
    ]);
    expect(rest.length).toBe(0);
  });

  it("keeps an incomplete trailing packet as rest", () => {
    const { packets, rest } = decodePktLines(Buffer.from("0006ab0009abc"));
    expect(packets).toEqual([{ kind: "data", payload: Buffer.from("ab") }]);
    expect(rest.toString()).toBe("0009abc");
  });

  it("rejects malformed lengths", () => {
    expect(() => decodePktLines(Buffer.from("zzzz"))).toThrow(/invalid pkt-line length prefix/);
    expect(() => decodePktLines(Buffer.from("0003"))).toThrow(/invalid pkt-line length 3/);
    expect(() => decodePktLines(Buffer.from("fff1"))).toThrow(/invalid pkt-line length 65521/);
  });

  it("decodes a stream arriving one byte at a time", async () => {
    const payload = Buffer.alloc(70_000);
    for (let i = 0; i < payload.length; i++) payload[i] = (i * 31) & 0xff;
    const wire = Buffer.concat([encodePktLines(payload), flushPkt, encodePktLine("tail")]);
    const chunks = [...wire].map((b) => Buffer.of(b));
    const packets = await decodeStream(chunks);
    expect(packets.map((p) => p.kind)).toEqual(["data", "data", "flush", "data"]);
    const data = packets.flatMap((p) => (p.kind === "data" ? [p.payload] : []));
    expect(Buffer.concat(data.slice(0, 2)).equals(payload)).toBe(true);
    expect(data[2]?.toString()).toBe("tail");
  });

  it("fails a stream that ends inside a packet", async () => {
    await expect(decodeStream([Buffer.from("000aabc")])).rejects.toThrow(/unexpected EOF/);
  });
});
