// Where Praefect stores a repository on its Gitaly nodes. Repositories it creates live under
// @cluster, fanned out by a hash of their ID so no directory grows too large; the virtual
// relative path clients use is never a disk path. Legacy repositories keep their relative path.
import { createHash } from "node:crypto";

export const PRAEFECT_ROOT_PREFIX = "@cluster";
const REPOSITORIES_PREFIX = `${PRAEFECT_ROOT_PREFIX}/repositories`;
const POOLS_PREFIX = `${PRAEFECT_ROOT_PREFIX}/pools`;

/** Rails names object pools @pools/xx/yy/<sha256 hex>.git, the hex starting with xxyy. */
const RAILS_POOL_PATH = /@pools\/([0-9a-f]{2})\/([0-9a-f]{2})\/([0-9a-f]{64})\.git$/;
const PRAEFECT_POOL_PATH = /@cluster\/pools\/[0-9a-f]{2}\/[0-9a-f]{2}\/[0-9]+$/;

function derivePath(prefix: string, repositoryId: number): string {
  // The decimal ID is hashed so operators can derive the path with ordinary tools.
  const hash = createHash("sha256").update(String(repositoryId)).digest("hex");
  return `${prefix}/${hash.slice(0, 2)}/${hash.slice(2, 4)}/${repositoryId}`;
}

/** `@cluster/repositories/<hh>/<hh>/<id>`, the hh being the first two bytes of sha256("<id>"). */
export function deriveReplicaPath(repositoryId: number): string {
  return derivePath(REPOSITORIES_PREFIX, repositoryId);
}

/** `@cluster/pools/<hh>/<hh>/<id>`: pools get their own prefix so Gitaly never prunes them as repositories. */
export function derivePoolPath(repositoryId: number): string {
  return derivePath(POOLS_PREFIX, repositoryId);
}

export function isRailsPoolPath(relativePath: string): boolean {
  const match = RAILS_POOL_PATH.exec(relativePath);
  return match !== null && (match[3] as string).startsWith(`${match[1]}${match[2]}`);
}

export function isPraefectPoolPath(relativePath: string): boolean {
  return PRAEFECT_POOL_PATH.test(relativePath);
}

export function isPoolPath(relativePath: string): boolean {
  return isRailsPoolPath(relativePath) || isPraefectPoolPath(relativePath);
}

/** The replica path for a repository Praefect is creating at `relativePath` with `repositoryId`. */
export function replicaPathFor(relativePath: string, repositoryId: number): string {
  return isRailsPoolPath(relativePath) ? derivePoolPath(repositoryId) : deriveReplicaPath(repositoryId);
}
