// `track-repository` and `remove-repository`: bringing a repository that exists on a node under
// Praefect's management, and removing one from the cluster.
import { randomBytes } from "node:crypto";
import * as grpc from "@grpc/grpc-js";
import type pg from "pg";
import pino from "pino";
import { RepositoryService } from "../../gen/repository_pb.js";
import { createClient } from "../../shared/grpc/service.js";
import { type PraefectConfig, storageNames } from "../config/schema.js";
import {
  ReplicationEventExistsError,
  RepositoryAlreadyExistsError,
  RepositoryNotFoundError,
} from "../datastore/errors.js";
import { type ReplicationEvent, type ReplicationJob, ReplicationQueue } from "../datastore/queue.js";
import { RepositoryStore } from "../datastore/repositories.js";
import { createNodeChannel } from "../nodes/channel.js";
import type { GitalyNode } from "../nodes/types.js";
import { runReplicationJob } from "../replication/replicator.js";
import {
  type CommandContext,
  CommandError,
  describeError,
  rejectPositionals,
  requireConfig,
  write,
} from "./context.js";
import { withDatabase } from "./database.js";
import { boolFlag, parseFlags, stringFlag } from "./flags.js";

const CLIENT_NAME_KEY = "client_name";

function correlationId(): string {
  return randomBytes(16).toString("base64url").slice(0, 22);
}

/** Channels to the configured nodes for one command; close() when done. */
function staticNodes(config: Pick<PraefectConfig, "virtual_storage">) {
  const nodes = new Map<string, GitalyNode>();
  for (const vs of config.virtual_storage) {
    for (const n of vs.node) {
      nodes.set(`${vs.name}\u0000${n.storage}`, {
        virtualStorage: vs.name,
        storage: n.storage,
        address: n.address,
        token: n.token,
        channel: createNodeChannel(n.address, n.token),
        backchannel: () => Promise.reject(new Error("no backchannel in CLI commands")),
      });
    }
  }
  return {
    node: (virtualStorage: string, storage: string) => nodes.get(`${virtualStorage}\u0000${storage}`),
    close: () => {
      for (const n of nodes.values()) n.channel.close();
    },
  };
}

function shuffle<T>(items: T[]): T[] {
  for (let i = items.length - 1; i > 0; i--) {
    const j = Math.floor(Math.random() * (i + 1));
    [items[i], items[j]] = [items[j] as T, items[i] as T];
  }
  return items;
}

const TRACK_PREFIX = "attempting to track repository in praefect database";

/**
 * `praefect track-repository -virtual-storage VS -relative-path PATH -replica-path PATH
 * -authoritative-storage STORAGE [-replicate-immediately]`.
 */
export async function trackRepository(args: readonly string[], ctx: CommandContext): Promise<number> {
  const { values, positionals } = parseFlags(args, {
    "virtual-storage": { kind: "string", required: true },
    "relative-path": { kind: "string", required: true },
    "replica-path": { kind: "string", required: true },
    "authoritative-storage": { kind: "string" },
    "replicate-immediately": { kind: "bool" },
  });
  rejectPositionals("track-repository", positionals);
  const config = requireConfig(ctx);
  const vsName = stringFlag(values, "virtual-storage");
  const relativePath = stringFlag(values, "relative-path");
  const replicaPath = stringFlag(values, "replica-path");
  const primary = stringFlag(values, "authoritative-storage");
  const replicateImmediately = boolFlag(values, "replicate-immediately");
  // The per-repository elector, the only one here, needs to know which replica is authoritative.
  if (primary === "") throw new CommandError('Required flag "authoritative-storage" not set');
  const fail = (message: string) => new CommandError(`${TRACK_PREFIX}: ${message}`);

  const vs = config.virtual_storage.find((v) => v.name === vsName);
  if (!vs) throw fail(`virtual storage ${JSON.stringify(vsName)} not found`);
  const authoritative = vs.node.find((n) => n.storage === primary);
  if (!authoritative) throw fail(`node ${JSON.stringify(primary)} not found`);
  let secondaries = vs.node.filter((n) => n.storage !== primary).map((n) => n.storage);
  const variableReplicationFactor = vs.default_replication_factor > 0;
  if (variableReplicationFactor) secondaries = shuffle(secondaries).slice(0, vs.default_replication_factor - 1);

  const nodes = staticNodes(config);
  try {
    return await withDatabase(config, "connect to database", async (pool) => {
      const authoritativeNode = nodes.node(vsName, primary) as GitalyNode;
      const metadata = new grpc.Metadata();
      metadata.set(CLIENT_NAME_KEY, "track-repository");
      let exists: boolean;
      try {
        exists = (
          await createClient(RepositoryService, authoritativeNode.channel).repositoryExists(
            { repository: { storageName: primary, relativePath: replicaPath } },
            { metadata, deadline: Date.now() + 10_000 },
          )
        ).exists;
      } catch {
        await write(
          ctx.out,
          `checking if repository exists ${JSON.stringify(primary)}, ${JSON.stringify(replicaPath)}\n`,
        );
        exists = false;
      }
      if (!exists) throw fail("authoritative repository does not exist");

      const store = new RepositoryStore(pool, storageNames(config));
      const queue = new ReplicationQueue(pool);
      const repositoryId = await track(store, ctx, {
        virtualStorage: vsName,
        relativePath,
        replicaPath,
        primary,
        secondaries,
        storeAssignments: variableReplicationFactor,
      }).catch((err: unknown) => {
        throw err instanceof CommandError ? err : fail((err as Error).message);
      });
      await write(ctx.out, "Finished adding new repository to be tracked in praefect database.\n");

      const meta = { correlation_id: correlationId() };
      for (const secondary of secondaries) {
        const job: ReplicationJob = {
          repositoryId,
          change: "update",
          relativePath,
          replicaPath,
          virtualStorage: vsName,
          sourceNodeStorage: primary,
          targetNodeStorage: secondary,
          params: null,
        };
        if (replicateImmediately) {
          const event: ReplicationEvent = {
            id: 0,
            state: "in_progress",
            attempt: 3,
            lockId: "",
            createdAt: new Date(),
            updatedAt: null,
            job,
            meta,
          };
          try {
            await runReplicationJob({ nodes, repositories: store, logger: pino({ level: "silent" }) }, event);
          } catch (err) {
            throw fail(`processing replication event ${(err as Error).message}`);
          }
          await write(ctx.out, `Finished replicating repository to ${JSON.stringify(secondary)}.\n`);
          continue;
        }
        try {
          await queue.enqueue(job, meta);
        } catch (err) {
          if (err instanceof ReplicationEventExistsError) {
            await write(ctx.out, `replication event queue already has similar entry: ${err.message}.\n`);
            return 0;
          }
          throw fail((err as Error).message);
        }
        await write(ctx.out, `Added replication job to replicate repository to ${JSON.stringify(secondary)}.\n`);
      }
      return 0;
    });
  } finally {
    nodes.close();
  }
}

async function track(
  store: RepositoryStore,
  ctx: CommandContext,
  repo: {
    virtualStorage: string;
    relativePath: string;
    replicaPath: string;
    primary: string;
    secondaries: string[];
    storeAssignments: boolean;
  },
): Promise<number> {
  let repositoryId: number;
  try {
    repositoryId = await store.reserveRepositoryId(repo.virtualStorage, repo.relativePath);
  } catch (err) {
    if (!(err instanceof RepositoryAlreadyExistsError))
      throw new Error(`ReserveRepositoryID: ${(err as Error).message}`);
    await write(ctx.out, "repository is already tracked in praefect database\n");
    try {
      return await store.getRepositoryId(repo.virtualStorage, repo.relativePath);
    } catch (lookupErr) {
      throw new Error(`GetRepositoryID: ${(lookupErr as Error).message}`);
    }
  }
  try {
    await store.createRepository({
      repositoryId,
      virtualStorage: repo.virtualStorage,
      relativePath: repo.relativePath,
      replicaPath: repo.replicaPath,
      primary: repo.primary,
      updatedSecondaries: [],
      outdatedSecondaries: repo.secondaries,
      storePrimary: true,
      storeAssignments: repo.storeAssignments,
    });
  } catch (err) {
    throw new Error(`CreateRepository: ${(err as Error).message}`);
  }
  return repositoryId;
}

/**
 * Deletes the repository's queued replication jobs, waiting for jobs in progress to finish (one
 * may be creating a replica that must then be removed too), polling every `pollMs`.
 */
async function removeReplicationEvents(pool: pg.Pool, vs: string, relativePath: string, pollMs = 1_000) {
  for (;;) {
    const { rows } = await pool.query<{ in_progress: boolean }>(
      `WITH removed AS (
         DELETE FROM replication_queue
         WHERE job ->> 'virtual_storage' = $1 AND job ->> 'relative_path' = $2 AND state <> 'in_progress'
       )
       SELECT EXISTS (
         SELECT FROM replication_queue
         WHERE job ->> 'virtual_storage' = $1 AND job ->> 'relative_path' = $2 AND state = 'in_progress'
       ) AS in_progress`,
      [vs, relativePath],
    );
    if (!rows[0]?.in_progress) return;
    await new Promise((resolve) => setTimeout(resolve, pollMs));
  }
}

/**
 * `praefect remove-repository -virtual-storage VS -relative-path PATH [-apply [-db-only]]`.
 * Without -db-only the replicas are removed the way Praefect's RemoveRepository does it: the
 * records go first, then each node holding a replica is asked to remove it (10 s). Upstream sends
 * that RPC through the running Praefect; here the command talks to the nodes itself.
 */
export async function removeRepository(args: readonly string[], ctx: CommandContext): Promise<number> {
  const { values, positionals } = parseFlags(args, {
    "virtual-storage": { kind: "string", required: true },
    "relative-path": { kind: "string", required: true },
    apply: { kind: "bool" },
    "db-only": { kind: "bool" },
  });
  rejectPositionals("remove-repository", positionals);
  const config = requireConfig(ctx);
  const vs = stringFlag(values, "virtual-storage");
  const relativePath = stringFlag(values, "relative-path");
  return withDatabase(config, "connect to database", async (pool) => {
    const store = new RepositoryStore(pool, storageNames(config));
    try {
      if (!(await store.repositoryExists(vs, relativePath))) {
        throw new CommandError("repository is not being tracked in Praefect");
      }
      await write(ctx.out, "Repository found in the database.\n");
    } catch (err) {
      if (err instanceof CommandError) throw err;
      await write(
        ctx.out,
        `error getting storages from database: ${(err as Error).message}. Please make sure the database parameters are set correctly and the database is accessible.\n`,
      );
    }
    if (!boolFlag(values, "apply")) {
      await write(
        ctx.out,
        "Re-run the command with -apply to remove repositories from the database and disk or -apply and -db-only to remove from database only.\n",
      );
      return 0;
    }
    if (boolFlag(values, "db-only")) {
      await write(ctx.out, `Attempting to remove ${relativePath} from the database...\n`);
      try {
        await store.deleteRepository(vs, relativePath);
      } catch (err) {
        throw new CommandError(`remove repository from database: ${(err as Error).message}`);
      }
      await write(ctx.out, "Repository removal from database completed.\n");
      await removeReplicationEvents(pool, vs, relativePath);
      return 0;
    }

    await write(
      ctx.out,
      `Attempting to remove ${relativePath} from the database, and delete it from all gitaly nodes...\n`,
    );
    let removed: { replicaPath: string; storages: string[] };
    try {
      removed = await store.deleteRepository(vs, relativePath);
    } catch (err) {
      const reason =
        err instanceof RepositoryNotFoundError
          ? "rpc error: code = NotFound desc = repository does not exist"
          : describeError(err);
      throw new CommandError(`repository removal failed: ${reason}`);
    }
    const nodes = staticNodes(config);
    try {
      await Promise.all(
        removed.storages.map(async (storage) => {
          const node = nodes.node(vs, storage);
          if (!node) return;
          try {
            await createClient(RepositoryService, node.channel).removeRepository(
              { repository: { storageName: storage, relativePath: removed.replicaPath } },
              { deadline: Date.now() + 10_000 },
            );
          } catch (err) {
            await write(ctx.err, `failed deleting repository from ${JSON.stringify(storage)}: ${describeError(err)}\n`);
          }
        }),
      );
    } finally {
      nodes.close();
    }
    await write(ctx.out, "Repository removal completed.\n");
    await write(ctx.out, "Removing replication events...\n");
    await removeReplicationEvents(pool, vs, relativePath);
    await write(ctx.out, "Replication event removal completed.\n");
    return 0;
  });
}
