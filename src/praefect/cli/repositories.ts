// The repository-metadata subcommands upstream implements as PraefectInfoService calls to the
// running Praefect: dataloss, accept-dataloss, set-replication-factor, metadata, verify. Here
// they read and write the database directly through RepositoryStore, with the same validation,
// output and error texts (errors keep upstream's `rpc error: code = … desc = …` shape, as the
// RPC would have reported them).
import { Code } from "../../shared/grpc/errors.js";
import { storageNames } from "../config/schema.js";
import { InvalidArgumentError, RepositoryNotFoundError } from "../datastore/errors.js";
import { type RepositoryMetadata, RepositoryStore } from "../datastore/repositories.js";
import {
  type CommandContext,
  CommandError,
  goTimeString,
  rejectPositionals,
  requireConfig,
  rpcErrorText,
  write,
} from "./context.js";
import { withDatabase } from "./database.js";
import { boolFlag, numberFlag, parseFlags, stringFlag } from "./flags.js";

function indent(level: number, text: string): string {
  return `${"  ".repeat(level)}${text}\n`;
}

/** `praefect dataloss [-virtual-storage NAME] [-partially-unavailable]`. */
export async function dataloss(args: readonly string[], ctx: CommandContext): Promise<number> {
  const { values, positionals } = parseFlags(args, {
    "virtual-storage": { kind: "string" },
    "partially-unavailable": { kind: "bool" },
  });
  rejectPositionals("dataloss", positionals);
  const config = requireConfig(ctx);
  const partially = boolFlag(values, "partially-unavailable");
  const picked = stringFlag(values, "virtual-storage");
  const virtualStorages = (picked !== "" ? [picked] : config.virtual_storage.map((vs) => vs.name)).sort();
  await withDatabase(config, "sql open", async (pool) => {
    const store = new RepositoryStore(pool, storageNames(config));
    for (const vs of virtualStorages) {
      await write(ctx.out, indent(0, `Virtual storage: ${vs}`));
      let repositories: Awaited<ReturnType<RepositoryStore["dataloss"]>>;
      try {
        repositories = await store.dataloss(vs, partially);
      } catch (err) {
        throw new CommandError(`getting response: ${rpcErrorText(Code.UNKNOWN, (err as Error).message)}`);
      }
      if (repositories.length === 0) {
        const msg = partially
          ? "All repositories are fully available on all assigned storages!"
          : "All repositories are available!";
        await write(ctx.out, indent(1, msg));
        continue;
      }
      let text = indent(1, "Repositories:");
      for (const repo of repositories) {
        text += indent(2, `${repo.relativePath}${repo.unavailable ? " (unavailable)" : ""}:`);
        text += indent(3, `Primary: ${repo.primary === "" ? "No Primary" : repo.primary}`);
        const assigned = (yes: boolean) => (yes ? ", assigned host" : "");
        const unhealthy = (healthy: boolean) => (healthy ? "" : ", unhealthy");
        text += indent(3, "In-Sync Storages:");
        for (const s of repo.storages.filter((s) => s.behindBy === 0)) {
          text += indent(4, `${s.name}${assigned(s.assigned)}${unhealthy(s.healthy)}`);
        }
        text += indent(3, "Outdated Storages:");
        for (const s of repo.storages.filter((s) => s.behindBy !== 0)) {
          const plural = s.behindBy > 1 ? "s" : "";
          text += indent(
            4,
            `${s.name} is behind by ${s.behindBy} change${plural} or less${assigned(s.assigned)}${unhealthy(s.healthy)}`,
          );
        }
      }
      await write(ctx.out, text);
    }
  });
  return 0;
}

/** `praefect accept-dataloss -virtual-storage VS -relative-path PATH -authoritative-storage STORAGE`. */
export async function acceptDataloss(args: readonly string[], ctx: CommandContext): Promise<number> {
  const { values, positionals } = parseFlags(args, {
    "virtual-storage": { kind: "string", required: true },
    "relative-path": { kind: "string", required: true },
    "authoritative-storage": { kind: "string", required: true },
  });
  rejectPositionals("accept-dataloss", positionals);
  const config = requireConfig(ctx);
  const vs = stringFlag(values, "virtual-storage");
  const relativePath = stringFlag(values, "relative-path");
  const storage = stringFlag(values, "authoritative-storage");
  const fail = (code: number, message: string) =>
    new CommandError(`set authoritative storage: ${rpcErrorText(code, message)}`);
  const storages = storageNames(config)[vs];
  if (!storages) throw fail(Code.INVALID_ARGUMENT, `unknown virtual storage: ${JSON.stringify(vs)}`);
  if (!storages.includes(storage)) {
    throw fail(Code.INVALID_ARGUMENT, `unknown authoritative storage: ${JSON.stringify(storage)}`);
  }
  await withDatabase(config, "sql open", async (pool) => {
    try {
      await new RepositoryStore(pool, storageNames(config)).setAuthoritativeReplica(vs, relativePath, storage);
    } catch (err) {
      if (err instanceof RepositoryNotFoundError) {
        throw fail(Code.INVALID_ARGUMENT, "repository does not exist on virtual storage");
      }
      throw fail(Code.INTERNAL, (err as Error).message);
    }
  });
  return 0;
}

/** `praefect set-replication-factor -virtual-storage VS -relative-path PATH -replication-factor N`. */
export async function setReplicationFactor(args: readonly string[], ctx: CommandContext): Promise<number> {
  const { values, positionals } = parseFlags(args, {
    "virtual-storage": { kind: "string", required: true },
    "relative-path": { kind: "string", required: true },
    "replication-factor": { kind: "uint", required: true },
  });
  rejectPositionals("set-replication-factor", positionals);
  const config = requireConfig(ctx);
  const storages = await withDatabase(config, "sql open", async (pool) => {
    try {
      return await new RepositoryStore(pool, storageNames(config)).setReplicationFactor(
        stringFlag(values, "virtual-storage"),
        stringFlag(values, "relative-path"),
        numberFlag(values, "replication-factor"),
      );
    } catch (err) {
      const code = err instanceof InvalidArgumentError ? Code.INVALID_ARGUMENT : Code.INTERNAL;
      throw new CommandError(rpcErrorText(code, `set replication factor: ${(err as Error).message}`));
    }
  });
  await write(ctx.out, `current assignments: ${storages.join(", ")}\n`);
  return 0;
}

function formatMetadata(metadata: RepositoryMetadata): string {
  let text =
    `Repository ID: ${metadata.repositoryId}\n` +
    `Virtual Storage: ${JSON.stringify(metadata.virtualStorage)}\n` +
    `Relative Path: ${JSON.stringify(metadata.relativePath)}\n` +
    `Replica Path: ${JSON.stringify(metadata.replicaPath)}\n` +
    `Primary: ${JSON.stringify(metadata.primary ?? "")}\n` +
    `Generation: ${metadata.generation}\n` +
    "Replicas:\n";
  for (const replica of metadata.replicas) {
    let generation = `${replica.generation}, fully up to date`;
    if (replica.generation === -1) generation = "replica not yet created";
    else if (replica.generation < metadata.generation) {
      generation = `${replica.generation}, behind by ${metadata.generation - replica.generation} changes`;
    }
    text +=
      `- Storage: ${JSON.stringify(replica.storage)}\n` +
      `  Assigned: ${replica.assigned}\n` +
      `  Generation: ${generation}\n` +
      `  Healthy: ${replica.healthy}\n` +
      `  Valid Primary: ${replica.validPrimary}\n` +
      `  Verified At: ${replica.verifiedAt ? goTimeString(replica.verifiedAt) : "unverified"}\n`;
  }
  return text;
}

/** `praefect metadata (-repository-id ID | -virtual-storage VS -relative-path PATH)`. */
export async function metadata(args: readonly string[], ctx: CommandContext): Promise<number> {
  const { values, positionals } = parseFlags(args, {
    "repository-id": { kind: "int" },
    "virtual-storage": { kind: "string" },
    "relative-path": { kind: "string" },
  });
  rejectPositionals("metadata", positionals);
  const config = requireConfig(ctx);
  const repositoryId = numberFlag(values, "repository-id");
  const vs = stringFlag(values, "virtual-storage");
  const relativePath = stringFlag(values, "relative-path");
  let query: (store: RepositoryStore) => Promise<RepositoryMetadata>;
  if (repositoryId !== 0) {
    if (vs !== "" || relativePath !== "") {
      throw new CommandError("virtual storage and relative path can't be provided with a repository ID");
    }
    query = (store) => store.getRepositoryMetadata(repositoryId);
  } else if (vs !== "" || relativePath !== "") {
    if (vs === "") throw new CommandError("virtual storage is required with relative path");
    if (relativePath === "") throw new CommandError("relative path is required with virtual storage");
    query = (store) => store.getRepositoryMetadataByPath(vs, relativePath);
  } else {
    throw new CommandError("repository ID or virtual storage and relative path required");
  }
  const found = await withDatabase(config, "dial", async (pool) => {
    try {
      return await query(new RepositoryStore(pool, storageNames(config)));
    } catch (err) {
      if (err instanceof RepositoryNotFoundError) {
        throw new CommandError(`get metadata: ${rpcErrorText(Code.NOT_FOUND, "repository not found")}`);
      }
      throw new CommandError(`get metadata: ${rpcErrorText(Code.INTERNAL, `get metadata: ${(err as Error).message}`)}`);
    }
  });
  await write(ctx.out, formatMetadata(found));
  return 0;
}

/** `praefect verify (-repository-id ID | -virtual-storage VS [-storage STORAGE])`. */
export async function verify(args: readonly string[], ctx: CommandContext): Promise<number> {
  const { values, positionals } = parseFlags(args, {
    "repository-id": { kind: "int" },
    "virtual-storage": { kind: "string" },
    storage: { kind: "string" },
  });
  rejectPositionals("verify", positionals);
  const config = requireConfig(ctx);
  const repositoryId = numberFlag(values, "repository-id");
  const vs = stringFlag(values, "virtual-storage");
  const storage = stringFlag(values, "storage");
  let mark: (store: RepositoryStore) => Promise<number>;
  if (repositoryId !== 0) {
    if (vs !== "" || storage !== "") {
      throw new CommandError("virtual storage and storage can't be provided with a repository ID");
    }
    mark = (store) => store.markUnverified(repositoryId);
  } else if (storage !== "") {
    if (vs === "") throw new CommandError("virtual storage must be passed with storage");
    mark = (store) => store.markStorageUnverified(vs, storage);
  } else if (vs !== "") {
    mark = (store) => store.markVirtualStorageUnverified(vs);
  } else {
    throw new CommandError("(repository id), (virtual storage) or (virtual storage, storage) required");
  }
  const marked = await withDatabase(config, "dial", async (pool) => {
    try {
      return await mark(new RepositoryStore(pool, storageNames(config)));
    } catch (err) {
      throw new CommandError(
        `verify replicas: ${rpcErrorText(Code.UNKNOWN, `schedule verification: ${(err as Error).message}`)}`,
      );
    }
  });
  await write(ctx.out, `${marked} replicas marked unverified\n`);
  return 0;
}
