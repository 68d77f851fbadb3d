// Runs one replication job against the nodes, as upstream's defaultReplicator does:
// - `update`: the generation the source has is read first; a target already at (or past) it
//   makes the job a no-op. Otherwise ReplicateRepository runs on the TARGET node, told where the
//   source lives through the `gitaly-servers` metadata; both use the job's replica path on their
//   own physical storage. On success the target gets the generation read before.
//   A source that turns out not to have the repository ("invalid source repository") loses its
//   replica record instead.
// - `delete`, `delete_replica`: RemoveRepository on the target (one already gone counts as
//   removed), then its replica record goes.
import * as grpc from "@grpc/grpc-js";
import { RepositoryService } from "../../gen/repository_pb.js";
import { encodeGitalyServers, GITALY_SERVERS_KEY } from "../../shared/gitaly/servers.js";
import { createClient } from "../../shared/grpc/service.js";
import { CORRELATION_ID_KEY as CORRELATION_METADATA_KEY, type Logger } from "../../shared/logging.js";
import { DowngradeAttemptedError, NoRowsAffectedError } from "../datastore/errors.js";
import { CORRELATION_ID_KEY, type ReplicationEvent } from "../datastore/queue.js";
import { GENERATION_UNKNOWN, type RepositoryStore } from "../datastore/repositories.js";
import type { NodeManager } from "../nodes/types.js";

export interface ReplicatorDeps {
  nodes: Pick<NodeManager, "node">;
  repositories: RepositoryStore;
  logger: Logger;
}

/** What a finished job did, for logs and tests. */
export type ReplicationOutcome = "replicated" | "skipped" | "removed" | "invalid-source";

export function correlationIdOf(event: Pick<ReplicationEvent, "meta">): string {
  const value = event.meta?.[CORRELATION_ID_KEY];
  return typeof value === "string" ? value : "";
}

function isInvalidSource(err: unknown): boolean {
  const e = err as Partial<grpc.ServiceError>;
  return e.code === grpc.status.NOT_FOUND && (e.details ?? "") === "invalid source repository";
}

function callMetadata(correlationId: string): grpc.Metadata {
  const md = new grpc.Metadata();
  if (correlationId !== "") md.set(CORRELATION_METADATA_KEY, correlationId);
  return md;
}

function describe(err: unknown): string {
  const e = err as Partial<grpc.ServiceError>;
  return typeof e.code === "number" ? `rpc error: code = ${grpc.status[e.code]} desc = ${e.details}` : String(err);
}

/** Runs `event`'s job; throws (with the job in the message) when it failed and should be retried. */
export async function runReplicationJob(deps: ReplicatorDeps, event: ReplicationEvent): Promise<ReplicationOutcome> {
  const { job } = event;
  const correlationId = correlationIdOf(event);
  const log = deps.logger.child({
    virtual_storage: job.virtualStorage,
    replication_job_target: job.targetNodeStorage,
    replication_job_source: job.sourceNodeStorage,
    correlation_id: correlationId,
  });
  const replicaPath =
    job.replicaPath !== "" ? job.replicaPath : await deps.repositories.getReplicaPath(job.repositoryId);
  const target = deps.nodes.node(job.virtualStorage, job.targetNodeStorage);
  if (!target) throw new Error(`no connection to target node "${job.virtualStorage}"/"${job.targetNodeStorage}"`);
  const targetRepository = { storageName: job.targetNodeStorage, relativePath: replicaPath };
  const repositories = createClient(RepositoryService, target.channel);

  switch (job.change) {
    case "update":
    case "create": {
      const source = deps.nodes.node(job.virtualStorage, job.sourceNodeStorage);
      if (!source) throw new Error(`no connection to source node "${job.virtualStorage}"/"${job.sourceNodeStorage}"`);
      let generation: number;
      try {
        generation = await deps.repositories.getReplicatedGeneration(
          job.repositoryId,
          job.sourceNodeStorage,
          job.targetNodeStorage,
        );
      } catch (err) {
        if (err instanceof DowngradeAttemptedError) {
          // A later generation may already have been replicated by an earlier job.
          log.info(
            { err: err.message },
            err.currentGeneration === err.attemptedGeneration
              ? "target repository already on the same generation, skipping replication job"
              : "repository downgrade prevented",
          );
          return "skipped";
        }
        throw new Error(`get replicated generation: ${(err as Error).message}`, { cause: err });
      }
      const metadata = callMetadata(correlationId);
      metadata.set(
        GITALY_SERVERS_KEY,
        encodeGitalyServers({ [job.sourceNodeStorage]: { address: source.address, token: source.token } }),
      );
      try {
        await repositories.replicateRepository(
          {
            repository: targetRepository,
            source: { storageName: job.sourceNodeStorage, relativePath: replicaPath },
          },
          { metadata },
        );
      } catch (err) {
        if (isInvalidSource(err)) {
          await deps.repositories.deleteInvalidRepository(job.repositoryId, job.sourceNodeStorage);
          log.info("invalid repository record removed");
          return "invalid-source";
        }
        throw new Error(`failed to create repository: ${describe(err)}`, { cause: err });
      }
      if (generation !== GENERATION_UNKNOWN) {
        await deps.repositories.setGeneration(job.repositoryId, job.targetNodeStorage, job.relativePath, generation);
      }
      return "replicated";
    }
    case "delete":
    case "delete_replica": {
      try {
        await repositories.removeRepository(
          { repository: targetRepository },
          { metadata: callMetadata(correlationId) },
        );
      } catch (err) {
        // Already gone is what the job wants; failing would retry a delete_replica forever.
        if ((err as Partial<grpc.ServiceError>).code !== grpc.status.NOT_FOUND) {
          throw new Error(`remove repository: ${describe(err)}`, { cause: err });
        }
        log.info("repository to remove did not exist on the target");
      }
      try {
        await deps.repositories.deleteReplica(job.repositoryId, job.targetNodeStorage);
      } catch (err) {
        // Removed from disk but no record: nothing left to do.
        if (!(err instanceof NoRowsAffectedError)) throw err;
        log.info("deleted repository did not have a store entry");
      }
      return "removed";
    }
    default:
      throw new Error(`unknown replication change type encountered: ${JSON.stringify(job.change)}`);
  }
}
