// OptimizeRepository: real housekeeping with git's own tools. The heuristical
// strategy only does work the statistics call for; eager does everything. Stale
// unreachable objects are pruned only after git's two-week grace period, so
// objects a concurrent push is about to reference are never lost.
import { create } from "@bufbuild/protobuf";
import {
  type OptimizeRepositoryRequest,
  OptimizeRepositoryResponseSchema,
  OptimizeRepositoryRequest_Strategy as Strategy,
} from "../../../gen/repository_pb.js";
import { Code, invalidArgument, RpcError } from "../../../shared/grpc/errors.js";
import type { RepositoryServiceDeps } from "./deps.js";
import { type RepositoryStats, repositoryStats } from "./stats.js";

export interface HousekeepingPlan {
  repack: "none" | "incremental" | "full";
  packRefs: boolean;
  writeCommitGraph: boolean;
  prune: boolean;
}

/** Decides what to do from the repository's statistics (pure, so it is unit-tested). */
export function planHousekeeping(stats: RepositoryStats, strategy: Strategy): HousekeepingPlan {
  if (strategy === Strategy.EAGER) {
    return { repack: "full", packRefs: true, writeCommitGraph: true, prune: true };
  }
  const tooManyPacks = stats.packfiles.count - stats.packfiles.keepCount > 16;
  // Full repacks rewrite everything; only worth it when packs have piled up.
  const repack = tooManyPacks
    ? "full"
    : stats.looseObjects.count > 1024 || (!stats.packfiles.hasBitmap && stats.looseObjects.count > 0)
      ? "incremental"
      : "none";
  return {
    repack,
    packRefs: stats.references.looseCount > 16,
    writeCommitGraph: repack !== "none" || !stats.commitGraph.exists,
    prune: stats.looseObjects.staleCount > 1024,
  };
}

export async function optimizeRepository(
  deps: RepositoryServiceDeps,
  req: OptimizeRepositoryRequest,
  signal?: AbortSignal,
) {
  const repoPath = deps.locator.repositoryPath(req.repository);
  switch (req.strategy) {
    case Strategy.UNSPECIFIED:
    case Strategy.HEURISTICAL:
    case Strategy.EAGER:
      break;
    // This node has no offloading configuration, which upstream reports like this.
    case Strategy.OFFLOADING:
      throw new RpcError(Code.UNIMPLEMENTED, "offloading feature not enabled", { metadata: { reason: "not enabled" } });
    case Strategy.REHYDRATION:
      throw invalidArgument("offloading configuration missing sink URL");
    default:
      throw invalidArgument(`unsupported optimization strategy ${req.strategy}`);
  }
  const plan = planHousekeeping(await repositoryStats(repoPath), req.strategy);
  const git = (subcommand: string, flags: string[], action?: string) =>
    deps.git.run({ repoPath, subcommand, flags, signal, ...(action ? { action } : {}) });
  if (plan.repack === "full") {
    await git("repack", ["-A", "-d", "--write-bitmap-index", "--pack-kept-objects", "-q"]);
  } else if (plan.repack === "incremental") {
    // Bare repositories default to repack.writeBitmaps, which git refuses for incremental repacks.
    await git("repack", ["-d", "-q", "--no-write-bitmap-index"]);
  }
  if (plan.packRefs) await git("pack-refs", ["--all"]);
  if (plan.prune) await git("prune", ["--expire=2.weeks.ago"]);
  if (plan.writeCommitGraph) await git("commit-graph", ["--reachable", "--changed-paths", "--split"], "write");
  deps.logger.info({ repo: req.repository?.relativePath, plan }, "optimized repository");
  return create(OptimizeRepositoryResponseSchema);
}
