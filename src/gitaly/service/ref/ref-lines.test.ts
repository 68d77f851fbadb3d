import { create } from "@bufbuild/protobuf";
import { describe, expect, it } from "vitest";
import { PaginationParameterSchema } from "../../../gen/shared_pb.js";
import { RpcError } from "../../../shared/grpc/errors.js";
import { type LineBatch, linePaging, pagedLines } from "./ref-lines.js";

async function* source(n: number): AsyncGenerator<Buffer> {
  for (let i = 0; i < n; i++) yield Buffer.from(`refs/heads/b${String(i).padStart(3, "0")}\0oid${i}`);
}

async function page(n: number, params?: { pageToken?: string; limit?: number }): Promise<LineBatch[]> {
  const out: LineBatch[] = [];
  const paging = linePaging(params ? create(PaginationParameterSchema, params) : undefined);
  for await (const batch of pagedLines(source(n), paging)) out.push(batch);
  return out;
}

const names = (batches: LineBatch[]) => batches.flatMap((b) => b.lines.map((l) => l.toString().split("\0")[0]));

describe("pagedLines", () => {
  it("sends 20 lines per batch and everything without parameters", async () => {
    const batches = await page(45);
    expect(batches.map((b) => b.lines.length)).toEqual([20, 20, 5]);
    expect(batches.every((b) => !b.hasNextPage)).toBe(true);
  });

  it("starts after the page token, stops at the limit and says more exist", async () => {
    const batches = await page(45, { pageToken: "refs/heads/b009", limit: 25 });
    expect(names(batches)).toEqual(
      Array.from({ length: 25 }, (_, i) => `refs/heads/b${String(i + 10).padStart(3, "0")}`),
    );
    expect(batches.map((b) => b.hasNextPage)).toEqual([false, true]);
    const exact = await page(45, { pageToken: "refs/heads/b039", limit: 5 });
    expect(exact.map((b) => b.hasNextPage)).toEqual([false]);
  });

  it("follows upstream for limit 0, negative limits and unknown tokens", async () => {
    expect(await page(5, { limit: 0 })).toEqual([]);
    expect(names(await page(5, { limit: -1 }))).toHaveLength(5);
    await expect(page(5, { pageToken: "refs/heads/zzz", limit: 2 })).rejects.toBeInstanceOf(RpcError);
    await expect(page(5, { pageToken: "refs/heads/zzz", limit: 0 })).rejects.toThrow(
      "invalid page token: sending lines: could not find page token",
    );
  });
});
