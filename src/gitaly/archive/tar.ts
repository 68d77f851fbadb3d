// Tar archives for GetSnapshot, custom hooks and replication. Archives come from
// other nodes and from clients, so extraction trusts nothing: every entry must stay
// inside the target directory, only regular files and directories are written, and
// modes are limited to permission bits.
import { createReadStream, createWriteStream } from "node:fs";
import { lstat, mkdir, readdir } from "node:fs/promises";
import { isAbsolute, join, normalize, posix, sep } from "node:path";
import { Readable } from "node:stream";
import { pipeline } from "node:stream/promises";
import tar from "tar-stream";

export interface TarEntrySource {
  /** Path inside the archive (forward slashes). */
  name: string;
  /** File on disk; directories have none. */
  path?: string;
  mode: number;
  size: number;
  mtime: Date;
  type: "file" | "directory";
}

/** Walks `root` and lists entries (sorted, so archives are reproducible). */
export async function collectEntries(
  root: string,
  { prefix = "", filter }: { prefix?: string; filter?: (relPath: string, isDir: boolean) => boolean } = {},
): Promise<TarEntrySource[]> {
  const out: TarEntrySource[] = [];
  const walk = async (rel: string): Promise<void> => {
    const dir = join(root, rel);
    let names: string[];
    try {
      names = (await readdir(dir)).sort();
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === "ENOENT") return;
      throw err;
    }
    for (const name of names) {
      const relPath = rel ? `${rel}/${name}` : name;
      const st = await lstat(join(root, relPath));
      if (st.isDirectory()) {
        if (filter && !filter(relPath, true)) continue;
        out.push({ name: `${prefix}${relPath}/`, mode: st.mode & 0o7777, size: 0, mtime: st.mtime, type: "directory" });
        await walk(relPath);
      } else if (st.isFile()) {
        if (filter && !filter(relPath, false)) continue;
        out.push({
          name: `${prefix}${relPath}`,
          path: join(root, relPath),
          mode: st.mode & 0o7777,
          size: st.size,
          mtime: st.mtime,
          type: "file",
        });
      }
      // Symlinks and special files are never archived.
    }
  };
  await walk("");
  return out;
}

/** Streams the entries as a tar archive. */
export function packEntries(
  entries: TarEntrySource[],
  extra: { name: string; data: Buffer; mode?: number }[] = [],
): Readable {
  const pack = tar.pack();
  (async () => {
    for (const e of entries) {
      if (e.type === "directory") {
        pack.entry({ name: e.name, type: "directory", mode: e.mode, mtime: e.mtime });
        continue;
      }
      const { path } = e;
      if (!path) continue;
      await new Promise<void>((resolve, reject) => {
        const sink = pack.entry({ name: e.name, type: "file", mode: e.mode, size: e.size, mtime: e.mtime }, (err) =>
          err ? reject(err) : resolve(),
        );
        pipeline(createReadStream(path), sink).catch(reject);
      });
    }
    for (const x of extra) pack.entry({ name: x.name, mode: x.mode ?? 0o644 }, x.data);
    pack.finalize();
  })().catch((err: unknown) => pack.destroy(err as Error));
  // tar-stream is built on streamx; hand callers a plain Node stream.
  return Readable.from(pack, { objectMode: false });
}

export class UnsafeArchiveError extends Error {}

function safeRelative(name: string): string | null {
  const clean = posix.normalize(name.replace(/\/+$/, ""));
  if (clean === "." || clean === "") return null;
  if (isAbsolute(clean) || clean.startsWith("../") || clean === ".." || clean.includes("\0")) {
    throw new UnsafeArchiveError(`invalid file path in tar: ${name}`);
  }
  return clean;
}

/**
 * Extracts a tar stream into `target` (which must exist). With `only`, entries outside
 * that top-level prefix are skipped; `stripPrefix` removes it from written paths.
 * Returns the number of entries written.
 */
export async function extractTar(
  input: Readable,
  target: string,
  { only, stripPrefix = false }: { only?: string; stripPrefix?: boolean } = {},
): Promise<number> {
  const extract = tar.extract();
  let written = 0;
  const base = normalize(target) + sep;
  const done = new Promise<void>((resolve, reject) => {
    extract.on("entry", (header, stream, next) => {
      const fail = (err: unknown) => {
        stream.resume();
        reject(err);
      };
      (async () => {
        let rel = safeRelative(header.name);
        if (rel === null) return stream.resume();
        if (only) {
          if (rel !== only && !rel.startsWith(`${only}/`)) return stream.resume();
          if (stripPrefix) {
            rel = rel === only ? null : rel.slice(only.length + 1);
            if (rel === null) return stream.resume();
          }
        }
        const dest = join(target, rel);
        if (!(dest + sep).startsWith(base)) throw new UnsafeArchiveError(`invalid file path in tar: ${header.name}`);
        const mode = (header.mode ?? 0o644) & 0o777;
        if (header.type === "directory") {
          await mkdir(dest, { recursive: true, mode: mode | 0o700 });
          written++;
          return stream.resume();
        }
        if (header.type !== "file") {
          // Links could point anywhere; a node's archive never needs them.
          throw new UnsafeArchiveError(`unsupported tar entry type ${header.type} for ${header.name}`);
        }
        await mkdir(join(dest, ".."), { recursive: true });
        await pipeline(stream, createWriteStream(dest, { mode }));
        written++;
      })().then(() => next(), fail);
    });
    extract.on("finish", resolve);
    extract.on("error", reject);
  });
  input.on("error", (err) => extract.destroy(err));
  input.pipe(extract);
  await done;
  return written;
}
