// Filesystem names for ServerInfo's fs_type, keyed by statfs magic number. The names
// are the ones upstream Gitaly reports, so dashboards that group by them keep working.
import { statfs } from "node:fs/promises";

const names = new Map<number, string>([
  [0x9123683e, "BTRFS"],
  [0xef53, "EXT_2_3_4"],
  [0x137d, "EXT"],
  [0x58465342, "XFS"],
  [0x01021994, "TMPFS"],
  [0x794c7630, "OVERLAYFS"],
  [0x6969, "NFS"],
  [0x2fc12fc1, "ZFS"],
  [0xff534d42, "CIFS_NUMBER"],
  [0x65735546, "FUSE"],
  [0x5346544e, "NTFS_SB"],
  [0x4d44, "MSDOS"],
  [0x3153464a, "JFS"],
  [0x52654973, "REISERFS"],
  [0xf2f52010, "F2FS"],
  [0x73717368, "SQUASHFS"],
  [0x858458f6, "RAMFS"],
]);

export function fsTypeName(magic: number): string {
  return names.get(magic >>> 0) ?? "unknown";
}

export async function detectFsType(path: string): Promise<string> {
  try {
    return fsTypeName((await statfs(path)).type);
  } catch {
    return "unknown";
  }
}
