// On-disk statistics of a repository: what RepositoryInfo reports and what
// OptimizeRepository's heuristics look at. Only file-system reads, no git.
import type { Dirent } from "node:fs";
import { readdir, readFile, stat } from "node:fs/promises";
import { join } from "node:path";

/** Loose objects older than this are "stale" (git's default prune expiry). */
export const STALE_OBJECTS_GRACE_MS = 14 * 24 * 3600 * 1000;

export interface RepositoryStats {
  sizeBytes: number;
  references: { looseCount: number; packedSize: number };
  looseObjects: { count: number; size: number; staleCount: number; staleSize: number; garbageCount: number };
  packfiles: {
    count: number;
    size: number;
    keepCount: number;
    keepSize: number;
    cruftCount: number;
    cruftSize: number;
    reverseIndexCount: number;
    hasBitmap: boolean;
  };
  /** chainLength counts the graphs of a split chain; a single commit-graph file has none. */
  commitGraph: { exists: boolean; chainLength: number };
  multiPackIndex: { exists: boolean };
  alternatesFileExists: boolean;
  alternates: string[];
}

async function entries(dir: string): Promise<Dirent[]> {
  try {
    return await readdir(dir, { withFileTypes: true });
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === "ENOENT") return [];
    throw err;
  }
}

async function sizeOf(path: string): Promise<number> {
  try {
    return (await stat(path)).size;
  } catch {
    return 0;
  }
}

/** Sum of regular file sizes below `dir`, not following symlinks. */
export async function directorySize(dir: string): Promise<number> {
  let total = 0;
  for (const e of await entries(dir)) {
    const p = join(dir, e.name);
    if (e.isDirectory()) total += await directorySize(p);
    else if (e.isFile()) total += await sizeOf(p);
  }
  return total;
}

async function countFiles(dir: string): Promise<number> {
  let n = 0;
  for (const e of await entries(dir)) {
    if (e.isDirectory()) n += await countFiles(join(dir, e.name));
    else if (e.isFile()) n++;
  }
  return n;
}

export async function repositoryStats(repoPath: string, now = Date.now()): Promise<RepositoryStats> {
  const objects = join(repoPath, "objects");
  const looseObjects = { count: 0, size: 0, staleCount: 0, staleSize: 0, garbageCount: 0 };
  for (const shard of await entries(objects)) {
    if (!shard.isDirectory() || !/^[0-9a-f]{2}$/.test(shard.name)) continue;
    for (const obj of await entries(join(objects, shard.name))) {
      if (!obj.isFile()) continue;
      if (!/^[0-9a-f]{38}([0-9a-f]{24})?$/.test(obj.name)) {
        looseObjects.garbageCount++;
        continue;
      }
      const st = await stat(join(objects, shard.name, obj.name));
      looseObjects.count++;
      looseObjects.size += st.size;
      if (now - st.mtimeMs > STALE_OBJECTS_GRACE_MS) {
        looseObjects.staleCount++;
        looseObjects.staleSize += st.size;
      }
    }
  }

  const packDir = join(objects, "pack");
  const packfiles = {
    count: 0,
    size: 0,
    keepCount: 0,
    keepSize: 0,
    cruftCount: 0,
    cruftSize: 0,
    reverseIndexCount: 0,
    hasBitmap: false,
  };
  const names = new Set((await entries(packDir)).filter((e) => e.isFile()).map((e) => e.name));
  for (const name of names) {
    const m = /^(pack-[0-9a-f]+)\.pack$/.exec(name);
    if (m) {
      const size = await sizeOf(join(packDir, name));
      packfiles.count++;
      packfiles.size += size;
      if (names.has(`${m[1]}.keep`)) {
        packfiles.keepCount++;
        packfiles.keepSize += size;
      }
      if (names.has(`${m[1]}.mtimes`)) {
        packfiles.cruftCount++;
        packfiles.cruftSize += size;
      }
    } else if (name.endsWith(".rev")) packfiles.reverseIndexCount++;
    else if (name.endsWith(".bitmap")) packfiles.hasBitmap = true;
  }

  let chainLength = 0;
  let commitGraphExists = false;
  try {
    const chain = await readFile(join(objects, "info", "commit-graphs", "commit-graph-chain"), "utf8");
    chainLength = chain.split("\n").filter((l) => l.trim() !== "").length;
    commitGraphExists = true;
  } catch {
    commitGraphExists = (await sizeOf(join(objects, "info", "commit-graph"))) > 0;
  }

  let alternates: string[] = [];
  let alternatesFileExists = false;
  try {
    alternates = (await readFile(join(objects, "info", "alternates"), "utf8"))
      .split("\n")
      .map((l) => l.trim())
      .filter((l) => l !== "" && !l.startsWith("#"));
    alternatesFileExists = true;
  } catch {
    // No alternates.
  }

  return {
    sizeBytes: await directorySize(repoPath),
    references: {
      looseCount: await countFiles(join(repoPath, "refs")),
      packedSize: await sizeOf(join(repoPath, "packed-refs")),
    },
    looseObjects,
    packfiles,
    commitGraph: { exists: commitGraphExists, chainLength },
    multiPackIndex: { exists: names.has("multi-pack-index") },
    alternatesFileExists,
    alternates,
  };
}
