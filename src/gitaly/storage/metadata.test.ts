import { mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { ensureStorageMetadata, METADATA_FILENAME, readFilesystemId } from "./metadata.js";

const UUID_V4 = /^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/;
const dirs: string[] = [];
function storageDir(): string {
  const dir = mkdtempSync(join(tmpdir(), "metadata-test-"));
  dirs.push(dir);
  return dir;
}

afterAll(() => {
  for (const d of dirs) rmSync(d, { recursive: true, force: true });
});

describe(".gitaly-metadata", () => {
  it("is created once with a UUIDv4 and the same ID is returned afterwards", async () => {
    const dir = storageDir();
    const first = await ensureStorageMetadata(dir);
    expect(first.filesystemId).toMatch(UUID_V4);
    const second = await ensureStorageMetadata(dir);
    expect(second.filesystemId).toBe(first.filesystemId);
    expect(await readFilesystemId(dir)).toBe(first.filesystemId);
    // Upstream's exact shape (json.Encoder: compact, trailing newline), and no temp files left.
    expect(readFileSync(join(dir, METADATA_FILENAME), "utf8")).toBe(
      `{"gitaly_filesystem_id":"${first.filesystemId}"}\n`,
    );
    expect(readdirSync(dir)).toEqual([METADATA_FILENAME]);
  });

  it("keeps an existing file", async () => {
    const dir = storageDir();
    writeFileSync(join(dir, METADATA_FILENAME), '{"gitaly_filesystem_id":"fixed-id"}\n');
    expect((await ensureStorageMetadata(dir)).filesystemId).toBe("fixed-id");
  });

  it("agrees on one ID when started concurrently", async () => {
    const dir = storageDir();
    const results = await Promise.all(Array.from({ length: 10 }, () => ensureStorageMetadata(dir)));
    expect(new Set(results.map((r) => r.filesystemId)).size).toBe(1);
    expect(readdirSync(dir)).toEqual([METADATA_FILENAME]);
  });

  it("fails on a missing or malformed file instead of inventing an ID", async () => {
    const dir = storageDir();
    await expect(readFilesystemId(dir)).rejects.toThrow(/ENOENT/);
    writeFileSync(join(dir, METADATA_FILENAME), "not json");
    await expect(readFilesystemId(dir)).rejects.toThrow(/invalid JSON/);
    await expect(ensureStorageMetadata(dir)).rejects.toThrow(/invalid JSON/);
  });
});
