// Raw tree objects: a sequence of "<octal mode> <name>\0<binary object ID>".
import { TreeEntry_EntryType } from "../../../gen/commit_pb.js";

export interface RawTreeEntry {
  /** The mode as git wrote it, e.g. "100644", "40000", "160000". */
  mode: string;
  /** The entry's name, byte-exact. */
  name: Buffer;
  oid: string;
}

/** Parses a tree object; `oidBytes` is 20 for SHA-1 repositories and 32 for SHA-256. */
export function parseTree(data: Uint8Array, oidBytes: number): RawTreeEntry[] {
  const buf = Buffer.from(data.buffer, data.byteOffset, data.byteLength);
  const entries: RawTreeEntry[] = [];
  let pos = 0;
  while (pos < buf.length) {
    const sp = buf.indexOf(0x20, pos);
    if (sp <= pos) throw new Error(`malformed tree: no mode at offset ${pos}`);
    const nul = buf.indexOf(0, sp + 1);
    if (nul <= sp + 1) throw new Error(`malformed tree: no name at offset ${sp + 1}`);
    if (nul + 1 + oidBytes > buf.length) throw new Error(`malformed tree: truncated object ID at offset ${nul + 1}`);
    entries.push({
      mode: buf.toString("latin1", pos, sp),
      name: Buffer.from(buf.subarray(sp + 1, nul)),
      oid: buf.toString("hex", nul + 1, nul + 1 + oidBytes),
    });
    pos = nul + 1 + oidBytes;
  }
  return entries;
}

/** The mode as a number ("100644" → 0o100644). */
export function parseMode(mode: string): number {
  const value = Number.parseInt(mode, 8);
  if (!/^[0-7]+$/.test(mode) || !Number.isSafeInteger(value)) throw new Error(`invalid tree entry mode ${mode}`);
  return value;
}

/** What an entry with `mode` points at, as git-ls-tree decides it. */
export function entryTypeOfMode(mode: number): TreeEntry_EntryType {
  switch (mode & 0o170000) {
    case 0o160000:
      return TreeEntry_EntryType.COMMIT;
    case 0o040000:
      return TreeEntry_EntryType.TREE;
    default:
      return TreeEntry_EntryType.BLOB;
  }
}
