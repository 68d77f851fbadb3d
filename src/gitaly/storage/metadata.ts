// `<storage>/.gitaly-metadata`: a random filesystem ID per storage, so that clients
// (Rails, Praefect) can tell whether two storages are the same directory. Written once,
// atomically, at startup; never rewritten.
import { randomBytes, randomUUID } from "node:crypto";
import { link, open, readFile, unlink } from "node:fs/promises";
import { join } from "node:path";

export const METADATA_FILENAME = ".gitaly-metadata";

export interface StorageMetadata {
  filesystemId: string;
}

function parse(path: string, text: string): StorageMetadata {
  let doc: unknown;
  try {
    doc = JSON.parse(text);
  } catch (err) {
    throw new Error(`${path}: invalid JSON: ${(err as Error).message}`);
  }
  const id = (doc as { gitaly_filesystem_id?: unknown } | null)?.gitaly_filesystem_id;
  if (typeof id !== "string") throw new Error(`${path}: gitaly_filesystem_id is not a string`);
  return { filesystemId: id };
}

/** The storage's filesystem ID; rejects if the file is missing or malformed. */
export async function readFilesystemId(storagePath: string): Promise<string> {
  const path = join(storagePath, METADATA_FILENAME);
  return parse(path, await readFile(path, "utf8")).filesystemId;
}

async function syncDirectory(dir: string): Promise<void> {
  const handle = await open(dir, "r");
  try {
    await handle.sync();
  } finally {
    await handle.close();
  }
}

/**
 * Reads the storage's metadata, creating it first if it does not exist. The new file is
 * written and fsynced under a temporary name, then hard-linked into place: link(2) fails
 * if the target exists, so concurrent starters agree on whichever ID landed first and a
 * reader never sees a partial file.
 */
export async function ensureStorageMetadata(storagePath: string): Promise<StorageMetadata> {
  const path = join(storagePath, METADATA_FILENAME);
  try {
    return parse(path, await readFile(path, "utf8"));
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== "ENOENT") throw err;
  }

  const tmp = join(storagePath, `${METADATA_FILENAME}.${randomBytes(6).toString("hex")}.tmp`);
  // Same bytes as upstream's json.Encoder: compact JSON and a trailing newline.
  const content = `${JSON.stringify({ gitaly_filesystem_id: randomUUID() })}\n`;
  const handle = await open(tmp, "wx", 0o644);
  try {
    await handle.writeFile(content, "utf8");
    await handle.sync();
  } finally {
    await handle.close();
  }
  try {
    await link(tmp, path);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== "EEXIST") {
      await unlink(tmp).catch(() => {});
      throw err;
    }
  }
  await unlink(tmp);
  await syncDirectory(storagePath);
  return parse(path, await readFile(path, "utf8"));
}
