// One RPC's view of a repository: its validated path, the quarantine object directories
// the request carries (GitLab's access checks read objects that are still quarantined
// during a push), and git/cat-file access that honours both and the call's cancellation.
import type { Repository } from "../../../gen/shared_pb.js";
import type { StorageLocator } from "../../storage/locator.js";
import type { CatfileCache, ObjectReader } from "../catfile.js";
import type { GitCommandFactory, GitCommandOptions, GitProcess, ObjectDirectories } from "../command.js";

export type RepoCommandOptions = Omit<GitCommandOptions, "repoPath" | "objectDirectories" | "signal">;

export interface RepoHandle {
  readonly path: string;
  readonly objectDirectories: ObjectDirectories | undefined;
  /** A cached cat-file reader (its own process when quarantine directories are set). */
  reader(): Promise<ObjectReader>;
  spawn(opts: RepoCommandOptions): GitProcess;
  run(opts: RepoCommandOptions): Promise<{ stdout: Buffer; stderr: string }>;
}

export interface RepoHandleDeps {
  locator: StorageLocator;
  git: GitCommandFactory;
  catfile: CatfileCache;
}

export function objectDirectoriesOf(repository: Repository | undefined): ObjectDirectories | undefined {
  if (!repository) return undefined;
  const objectDirectory = repository.gitObjectDirectory;
  const alternateObjectDirectories = repository.gitAlternateObjectDirectories;
  if (!objectDirectory && alternateObjectDirectories.length === 0) return undefined;
  return {
    ...(objectDirectory ? { objectDirectory } : {}),
    ...(alternateObjectDirectories.length > 0 ? { alternateObjectDirectories: [...alternateObjectDirectories] } : {}),
  };
}

/** Validates `repository` (throwing the locator's gRPC errors) and opens it. */
export function openRepo(deps: RepoHandleDeps, repository: Repository | undefined, signal?: AbortSignal): RepoHandle {
  const path = deps.locator.repositoryPath(repository);
  const objectDirectories = objectDirectoriesOf(repository);
  const full = (opts: RepoCommandOptions): GitCommandOptions => ({
    ...opts,
    repoPath: path,
    ...(objectDirectories ? { objectDirectories } : {}),
    ...(signal ? { signal } : {}),
  });
  return {
    path,
    objectDirectories,
    reader: () => deps.catfile.reader(path, objectDirectories ? { objectDirectories } : {}),
    spawn: (opts) => deps.git.spawn(full(opts)),
    run: (opts) => deps.git.run(full(opts)),
  };
}
