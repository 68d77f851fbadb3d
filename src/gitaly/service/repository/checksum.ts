// The repository checksum Praefect compares across replicas: SHA-1 of each
// `git show-ref --head` line naming HEAD or a GitLab-relevant ref, XORed together as
// one big integer. The pattern is deliberately unanchored, as upstream's is, so the
// same lines count on every node and checksums match upstream Gitaly's.
import { createHash } from "node:crypto";

export const ZERO_CHECKSUM = "0".repeat(40);

const REFS_ALLOWED = /HEAD|(refs\/(heads|tags|keep-around|merge-requests|environments|notes)\/)/;

export class Checksum {
  private sum = 0n;

  /** Adds one `<oid> <refname>` line (without its newline). */
  addLine(line: string): void {
    if (!REFS_ALLOWED.test(line)) return;
    const digest = createHash("sha1").update(line).digest("hex");
    this.sum ^= BigInt(`0x${digest}`);
  }

  get isZero(): boolean {
    return this.sum === 0n;
  }

  /** Hex of the minimal big-endian bytes: leading zero bytes are dropped, as upstream does. */
  toString(): string {
    if (this.sum === 0n) return ZERO_CHECKSUM;
    const hex = this.sum.toString(16);
    return hex.length % 2 === 0 ? hex : `0${hex}`;
  }
}

/** The checksum of a whole `git show-ref --head` output. */
export function checksumOfShowRef(output: string): string {
  const c = new Checksum();
  for (const line of output.split("\n")) if (line !== "") c.addLine(line);
  return c.toString();
}
