// ReplicateRepository (runs on the target node): make the target an exact copy of
// a repository on another node. A missing target is created from the source's
// snapshot first; then config, references and objects, and custom hooks are synced.
// References and objects are fetched with `git fetch` through gitaly-ssh, which
// calls the source's SSHUploadPackWithSidechannel, so only missing objects travel.

import { mkdir, readdir, rename, rm, writeFile } from "node:fs/promises";
import { join, resolve } from "node:path";
import { Readable } from "node:stream";
import { create } from "@bufbuild/protobuf";
import * as grpc from "@grpc/grpc-js";
import {
  RepositoryInfoResponse_ReferencesInfo_ReferenceBackend as ReferenceBackend,
  type ReplicateRepositoryRequest,
  ReplicateRepositoryResponseSchema,
  RepositoryService,
} from "../../../gen/repository_pb.js";
import type { Repository } from "../../../gen/shared_pb.js";
import { v2AuthInterceptor } from "../../../shared/auth/v2-token.js";
import { type GitalyServerInfo, gitalyServerFromMetadata, grpcTarget } from "../../../shared/gitaly/servers.js";
import { Code, invalidArgument, notFound, RpcError } from "../../../shared/grpc/errors.js";
import { createClient, type PromiseClient } from "../../../shared/grpc/service.js";
import { clusterRootCertificates } from "../../../shared/tls/roots.js";
import { extractTar } from "../../archive/tar.js";
import { GitCommandError } from "../../git/command.js";
import { installCustomHooks } from "./custom-hooks.js";
import type { RepositoryServiceDeps } from "./deps.js";
import { isGitDirectory } from "./lifecycle.js";

/** The gitaly-ssh program next to this module once built (dist/gitaly/gitaly-ssh.js). */
export const GITALY_SSH = resolve(import.meta.dirname, "../../gitaly-ssh.js");

type RepoClient = PromiseClient<(typeof RepositoryService)["method"]>;

function dialSource(server: GitalyServerInfo): { client: RepoClient; close: () => void } {
  const { target, tls } = grpcTarget(server.address);
  const channel = new grpc.Client(
    target,
    tls ? grpc.credentials.createSsl(clusterRootCertificates()) : grpc.credentials.createInsecure(),
    {
      interceptors: server.token ? [v2AuthInterceptor(server.token)] : [],
    },
  );
  return { client: createClient(RepositoryService, channel), close: () => channel.close() };
}

/** Streams a server-streaming `data` response into a Node Readable. */
function dataStream(source: AsyncIterable<{ data: Uint8Array }>): Readable {
  return Readable.from(
    (async function* () {
      for await (const msg of source) if (msg.data.length > 0) yield Buffer.from(msg.data);
    })(),
  );
}

function sourceError(what: string, err: unknown): RpcError {
  const e = err as Partial<grpc.ServiceError>;
  if (typeof e.code === "number") return new RpcError(e.code, `${what}: ${e.details ?? e.message}`);
  return new RpcError(Code.INTERNAL, `${what}: ${(err as Error).message}`);
}

async function createFromSnapshot(
  deps: RepositoryServiceDeps,
  client: RepoClient,
  source: Repository,
  target: Repository,
) {
  const targetPath = deps.locator.repositoryPath(target, { mustExist: false });
  const staging = await deps.locator.tempDir(target.storageName, "replicate");
  try {
    await extractTar(dataStream(client.getSnapshot({ repository: source })), staging);
    // A snapshot of a repository without loose refs or objects may lack the directories.
    for (const dir of ["refs", "objects"]) await mkdir(join(staging, dir), { recursive: true });
    if (!(await isGitDirectory(staging))) throw new Error("snapshot is not a git repository");
    await mkdir(join(targetPath, ".."), { recursive: true });
    await rename(staging, targetPath);
  } catch (err) {
    await rm(staging, { recursive: true, force: true });
    if (err instanceof RpcError) throw err;
    throw sourceError("could not create repository from snapshot", err);
  }
}

async function syncGitconfig(client: RepoClient, source: Repository, targetPath: string) {
  const chunks: Buffer[] = [];
  for await (const msg of client.getConfig({ repository: source })) chunks.push(Buffer.from(msg.data));
  const tmp = join(targetPath, `config.replicate-${process.pid}-${Date.now()}`);
  await writeFile(tmp, Buffer.concat(chunks));
  await rename(tmp, join(targetPath, "config"));
}

async function syncReferences(
  deps: RepositoryServiceDeps,
  server: GitalyServerInfo,
  source: Repository,
  targetPath: string,
  signal: AbortSignal,
) {
  const payload = JSON.stringify({
    repository: {
      storageName: source.storageName,
      relativePath: source.relativePath,
      glRepository: source.glRepository,
    },
  });
  const env = { GITALY_ADDRESS: server.address, GITALY_TOKEN: server.token, GITALY_PAYLOAD: payload };
  const sshCommand = `${JSON.stringify(process.execPath)} ${JSON.stringify(GITALY_SSH)}`;
  const config = [
    { key: "core.sshCommand", value: sshCommand },
    // Protocol v2 needs git to pass GIT_PROTOCOL to the "ssh" command.
    { key: "ssh.variant", value: "ssh" },
    { key: "protocol.version", value: "2" },
  ];
  try {
    await deps.git.run({
      repoPath: targetPath,
      subcommand: "fetch",
      flags: ["--quiet", "--prune", "--atomic", "--force", "--no-write-fetch-head", "--no-auto-gc"],
      args: ["ssh://gitaly/internal.git", "+refs/*:refs/*"],
      env,
      config,
      signal,
    });
    // HEAD is not a ref fetch copies; ask the source which branch it points at.
    const { stdout } = await deps.git.run({
      repoPath: targetPath,
      subcommand: "ls-remote",
      flags: ["--symref"],
      args: ["ssh://gitaly/internal.git", "HEAD"],
      env,
      config,
      signal,
    });
    const head = /^ref: (refs\/\S+)\tHEAD$/m.exec(stdout.toString("utf8"))?.[1];
    if (head) await deps.git.run({ repoPath: targetPath, subcommand: "symbolic-ref", args: ["HEAD", head], signal });
  } catch (err) {
    if (err instanceof GitCommandError) {
      throw new RpcError(
        Code.INTERNAL,
        `synchronizing references: fetch internal remote: ${err.stderr.trim() || err.message}`,
      );
    }
    throw err;
  }
}

/** Whether `dir` has a git repository anywhere below it (namespace directories do). */
async function containsRepository(dir: string, depth = 0): Promise<boolean> {
  let entries: import("node:fs").Dirent[];
  try {
    entries = await readdir(dir, { withFileTypes: true });
  } catch {
    return false;
  }
  for (const e of entries) {
    if (!e.isDirectory()) continue;
    const sub = join(dir, e.name);
    if (await isGitDirectory(sub)) return true;
    if (depth < 8 && (await containsRepository(sub, depth + 1))) return true;
  }
  return false;
}

export async function replicateRepository(
  deps: RepositoryServiceDeps,
  req: ReplicateRepositoryRequest,
  metadata: grpc.Metadata,
  signal: AbortSignal,
) {
  const target = req.repository;
  deps.locator.repositoryPath(target, { mustExist: false });
  const source = req.source;
  if (!source) throw invalidArgument("source repository cannot be empty");
  if (!target || target.storageName === source.storageName) {
    throw invalidArgument("repository and source have the same storage");
  }
  let server: GitalyServerInfo;
  try {
    server = gitalyServerFromMetadata(metadata, source.storageName);
  } catch (err) {
    throw invalidArgument(`extracting gitaly server for source: ${(err as Error).message}`);
  }
  const { client, close } = dialSource(server);
  try {
    let exists: boolean;
    try {
      exists = (await client.repositoryExists({ repository: source })).exists;
    } catch (err) {
      throw sourceError("checking source repository", err);
    }
    if (!exists) throw notFound("invalid source repository");
    const info = await client.repositoryInfo({ repository: source }).catch((err: unknown) => {
      throw sourceError("repository info", err);
    });
    const backend = info.references?.referenceBackend ?? ReferenceBackend.UNSPECIFIED;
    if (backend !== ReferenceBackend.FILES && backend !== ReferenceBackend.UNSPECIFIED) {
      throw new RpcError(Code.FAILED_PRECONDITION, "unsupported reference backend on source");
    }

    const targetPath = deps.locator.repositoryPath(target, { mustExist: false });
    if (!(await isGitDirectory(targetPath))) {
      // Something that is not a repository is in the way (a failed earlier attempt):
      // replace it, but never a directory that holds other repositories.
      if (await containsRepository(targetPath)) {
        throw new RpcError(Code.FAILED_PRECONDITION, "target path is not a repository but contains repositories");
      }
      await rm(targetPath, { recursive: true, force: true });
      await createFromSnapshot(deps, client, source, target);
    }
    await syncGitconfig(client, source, targetPath).catch((err: unknown) => {
      throw sourceError("synchronizing gitconfig", err);
    });
    await syncReferences(deps, server, source, targetPath, signal);
    await installCustomHooks(
      deps,
      target.storageName,
      targetPath,
      dataStream(client.getCustomHooks({ repository: source })),
    ).catch((err: unknown) => {
      throw sourceError("synchronizing custom hooks", err);
    });
    return create(ReplicateRepositoryResponseSchema);
  } finally {
    close();
  }
}
