// Maps RPC `Repository` messages to directories, refusing anything that could reach
// outside a configured storage. Error codes and messages follow upstream Gitaly exactly
// (internal/gitaly/config/locator.go, internal/gitaly/storage/locator.go): clients such as
// Rails and Praefect match on them.
import { lstatSync, mkdirSync, realpathSync, statSync } from "node:fs";
import { mkdtemp } from "node:fs/promises";
import { basename, dirname, join, resolve, sep } from "node:path";
import type { Repository } from "../../gen/shared_pb.js";
import { Code, invalidArgument, notFound, RpcError } from "../../shared/grpc/errors.js";

/** Top-level directory of a storage that holds Gitaly's own data (temp dirs, caches, state). */
export const GITALY_DATA_DIR = "+gitaly";
/** Where temporary directories live, relative to the storage root. */
export const GITALY_TMP_DIR = `${GITALY_DATA_DIR}/tmp`;
export const GITALY_CACHE_DIR = `${GITALY_DATA_DIR}/cache`;
export const GITALY_STATE_DIR = `${GITALY_DATA_DIR}/state`;

export const ERR_STORAGE_NOT_SET = "storage name not set";
export const ERR_STORAGE_NOT_FOUND = "storage name not found";
export const ERR_REPOSITORY_NOT_SET = "repository not set";
export const ERR_REPOSITORY_PATH_NOT_SET = "repository path not set";
export const ERR_REPOSITORY_NOT_FOUND = "repository not found";
export const ERR_REPOSITORY_NOT_VALID = "repository not valid";
export const ERR_RELATIVE_PATH_ESCAPES_ROOT = "relative path escapes root directory";
export const ERR_STORAGE_DOES_NOT_EXIST = "storage does not exist";

export interface StorageConfig {
  name: string;
  path: string;
}

/** The two fields of a `Repository` message that locate it. */
export type RepositoryLocation = Pick<Repository, "storageName" | "relativePath">;

export interface RepositoryPathOptions {
  /**
   * Require an existing Git directory (objects/, refs/ and HEAD). Default true; turn it off
   * for RPCs that create repositories.
   */
  mustExist?: boolean;
}

/** Upstream's NotFound for a missing repository, with its storage and path as metadata. */
export function repositoryNotFoundError(storageName: string, relativePath: string): RpcError {
  return notFound(ERR_REPOSITORY_NOT_FOUND, { storage_name: storageName, relative_path: relativePath });
}

/**
 * Joins `relativePath` onto `root` like Go's filepath.Join and returns the cleaned path
 * relative to root, or null when the result is neither root nor below it. Note that an
 * absolute `relativePath` is joined under root, as upstream does, so it cannot escape.
 */
export function cleanRelativePath(root: string, relativePath: string): string | null {
  let abs = join(root, relativePath);
  // Go's Clean drops a trailing slash; Node's join keeps it.
  while (abs.length > 1 && abs.endsWith(sep)) abs = abs.slice(0, -1);
  if (abs === root) return "";
  const prefix = root.endsWith(sep) ? root : root + sep;
  return abs.startsWith(prefix) ? abs.slice(prefix.length) : null;
}

function isUnder(root: string, path: string): boolean {
  if (path === root) return true;
  return path.startsWith(root.endsWith(sep) ? root : root + sep);
}

function errnoCode(err: unknown): string | undefined {
  return (err as NodeJS.ErrnoException | undefined)?.code;
}

export class StorageLocator {
  private readonly storages = new Map<string, string>();

  constructor(storages: readonly StorageConfig[]) {
    for (const s of storages) {
      if (!s.name) throw new Error("storage without a name");
      if (this.storages.has(s.name)) throw new Error(`duplicate storage name ${JSON.stringify(s.name)}`);
      // A trailing slash or a relative path would break the prefix checks below.
      this.storages.set(s.name, resolve(s.path));
    }
  }

  /** Names of the configured storages, in configuration order. */
  storageNames(): string[] {
    return [...this.storages.keys()];
  }

  hasStorage(storageName: string): boolean {
    return this.storages.has(storageName);
  }

  /** The absolute root of a storage; InvalidArgument for an empty or unknown name. */
  storagePath(storageName: string): string {
    if (storageName === "") throw invalidArgument(ERR_STORAGE_NOT_SET);
    const path = this.storages.get(storageName);
    if (path === undefined) throw invalidArgument(ERR_STORAGE_NOT_FOUND, { storage_name: storageName });
    return path;
  }

  /**
   * Validates a repository message and returns its absolute path. Checks, in upstream's
   * order: the message is set, the path is set, the storage is known and exists on disk,
   * the path stays inside the storage (lexically, and after resolving symlinks of the
   * existing part), and with `mustExist` that it is a Git directory.
   */
  repositoryPath(repo: RepositoryLocation | undefined, opts: RepositoryPathOptions = {}): string {
    const mustExist = opts.mustExist ?? true;
    if (!repo || (repo.storageName === "" && repo.relativePath === "")) {
      throw invalidArgument(ERR_REPOSITORY_NOT_SET);
    }
    const { storageName, relativePath } = repo;
    if (relativePath === "") throw invalidArgument(ERR_REPOSITORY_PATH_NOT_SET);
    const root = this.storagePath(storageName);

    try {
      statSync(root);
    } catch (err) {
      if (errnoCode(err) === "ENOENT") throw notFound(ERR_STORAGE_DOES_NOT_EXIST, { storage_name: storageName });
      throw new RpcError(Code.UNKNOWN, `storage path: ${(err as Error).message}`, { cause: err });
    }

    // The filesystem APIs refuse NUL anyway; refusing here keeps the error an InvalidArgument.
    if (relativePath.includes("\0")) {
      throw invalidArgument(ERR_RELATIVE_PATH_ESCAPES_ROOT, { relative_path: relativePath });
    }
    const cleaned = cleanRelativePath(root, relativePath);
    if (cleaned === null) throw invalidArgument(ERR_RELATIVE_PATH_ESCAPES_ROOT, { relative_path: relativePath });
    const path = cleaned === "" ? root : join(root, cleaned);

    // Upstream only checks lexically; a symlink inside the storage could still lead out of
    // it, so the existing part of the path must also resolve inside the real storage root.
    if (!this.resolvesInside(root, path)) {
      throw invalidArgument(ERR_RELATIVE_PATH_ESCAPES_ROOT, { relative_path: relativePath });
    }

    if (mustExist) this.checkGitDirectory(path, storageName, relativePath);
    return path;
  }

  /** Like repositoryPath, for callers that only want the check. */
  validateRepository(repo: RepositoryLocation | undefined, opts: RepositoryPathOptions = {}): void {
    this.repositoryPath(repo, opts);
  }

  /** `<storage>/+gitaly/tmp`, created if missing. */
  tempRoot(storageName: string): string {
    const dir = this.dataPath(storageName, "tmp");
    mkdirSync(dir, { recursive: true, mode: 0o770 });
    return dir;
  }

  /**
   * A new, empty, uniquely named directory under `<storage>/+gitaly/tmp/`, for building a
   * repository aside before renaming it into place (rename(2) within one filesystem is
   * atomic). The caller removes it if it is not renamed away.
   */
  async tempDir(storageName: string, prefix = "repo"): Promise<string> {
    if (!/^[A-Za-z0-9._-]*$/.test(prefix)) throw new Error(`invalid temporary directory prefix ${prefix}`);
    return mkdtemp(join(this.tempRoot(storageName), prefix));
  }

  /** `<storage>/+gitaly/cache` (not created). */
  cacheDir(storageName: string): string {
    return this.dataPath(storageName, "cache");
  }

  /** `<storage>/+gitaly/state` (not created). */
  stateDir(storageName: string): string {
    return this.dataPath(storageName, "state");
  }

  private dataPath(storageName: string, kind: "tmp" | "cache" | "state"): string {
    const root = this.storages.get(storageName);
    if (root === undefined) {
      throw invalidArgument(`${kind} dir: no such storage: ${JSON.stringify(storageName)}`);
    }
    return join(root, GITALY_DATA_DIR, kind);
  }

  private resolvesInside(root: string, path: string): boolean {
    let realRoot: string;
    try {
      realRoot = realpathSync(root);
    } catch {
      return false;
    }
    // Walk up to the deepest entry that exists, resolve it, and re-append the rest.
    let existing = path;
    const rest: string[] = [];
    for (;;) {
      try {
        // lstat, not stat: a dangling symlink exists and must not be walked past.
        lstatSync(existing);
      } catch (err) {
        const code = errnoCode(err);
        if (code !== "ENOENT" && code !== "ENOTDIR") return false;
        if (existing === root) return false;
        rest.unshift(basename(existing));
        existing = dirname(existing);
        continue;
      }
      let real: string;
      try {
        real = realpathSync(existing);
      } catch {
        // A dangling symlink (or a loop): where it would lead cannot be proven safe.
        return false;
      }
      return isUnder(realRoot, rest.length === 0 ? real : join(real, ...rest));
    }
  }

  private checkGitDirectory(path: string, storageName: string, relativePath: string): void {
    try {
      if (!statSync(path).isDirectory()) {
        throw new RpcError(Code.UNKNOWN, "validate git directory: not a directory");
      }
    } catch (err) {
      if (err instanceof RpcError) throw err;
      if (errnoCode(err) === "ENOENT") throw repositoryNotFoundError(storageName, relativePath);
      throw new RpcError(Code.UNKNOWN, `validate git directory: stat: ${(err as Error).message}`, { cause: err });
    }
    for (const entry of ["objects", "refs", "HEAD"]) {
      try {
        statSync(join(path, entry));
      } catch (err) {
        if (errnoCode(err) !== "ENOENT") {
          throw new RpcError(
            Code.UNKNOWN,
            `validate git directory: stat ${JSON.stringify(entry)}: ${(err as Error).message}`,
            {
              cause: err,
            },
          );
        }
        throw new RpcError(Code.FAILED_PRECONDITION, `${ERR_REPOSITORY_NOT_VALID}: "${entry}" does not exist`, {
          metadata: { storage_name: storageName, relative_path: relativePath },
        });
      }
    }
  }
}
