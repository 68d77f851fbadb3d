import { describe, expect, it } from "vitest";
import { frames } from "./frames.js";

async function collect(chunks: Buffer[], size: number): Promise<Buffer[]> {
  async function* source() {
    yield* chunks;
  }
  const out: Buffer[] = [];
  for await (const f of frames(source(), size)) out.push(f);
  return out;
}

describe("frames", () => {
  it("re-chunks into full frames and a short last one, keeping every byte in order", async () => {
    const data = Buffer.from(Array.from({ length: 1000 }, (_, i) => i % 251));
    const chunks = [data.subarray(0, 7), data.subarray(7, 300), data.subarray(300, 301), data.subarray(301)];
    const out = await collect(chunks, 128);
    expect(out.map((f) => f.length)).toEqual([128, 128, 128, 128, 128, 128, 128, 104]);
    expect(Buffer.concat(out).equals(data)).toBe(true);
  });

  it("splits one big chunk into several frames", async () => {
    const data = Buffer.alloc(10, 1);
    expect((await collect([data], 3)).map((f) => f.length)).toEqual([3, 3, 3, 1]);
  });

  it("yields nothing for an empty stream", async () => {
    expect(await collect([], 4)).toEqual([]);
    expect(await collect([Buffer.alloc(0)], 4)).toEqual([]);
  });

  it("rejects a non-positive frame size", async () => {
    await expect(collect([Buffer.alloc(1)], 0)).rejects.toThrow(RangeError);
  });
});
