// Shared helpers for the RepositoryService suites: a typed client on a running Gitaly,
// fixture placement inside a storage, an independent checksum, tar building, and a
// listing of everything outside the storages (to prove nothing escaped them).
import { createHash } from "node:crypto";
import { cpSync, existsSync, lstatSync, readdirSync } from "node:fs";
import { join, relative } from "node:path";
import type * as grpc from "@grpc/grpc-js";
import tar from "tar-stream";
import { expect } from "vitest";
import { RepositoryService } from "../../../src/gen/repository_pb.js";
import { createClient, type PromiseClient } from "../../../src/shared/grpc/service.js";
import { git, type StandardRepository } from "../../harness/git-fixtures.js";
import type { GitalyProcess } from "../../harness/gitaly.js";

export type RepositoryClient = PromiseClient<(typeof RepositoryService)["method"]>;

export function repositoryClient(gitaly: GitalyProcess): RepositoryClient {
  return createClient(RepositoryService, gitaly.channel());
}

/** The absolute path of `relativePath` in the first storage. */
export function storagePath(gitaly: GitalyProcess, relativePath = ""): string {
  const storage = gitaly.storages[0];
  if (!storage) throw new Error("gitaly has no storage");
  return join(storage.path, relativePath);
}

export function repo(gitaly: GitalyProcess, relativePath: string) {
  return { storageName: gitaly.storages[0]?.name ?? "default", relativePath };
}

/**
 * A copy of a fixture at `dest`: building the standard fixture compresses 10 MiB, so
 * suites build it once and copy it for every test that changes it.
 */
export function copyFixture(template: StandardRepository, dest: string): StandardRepository {
  cpSync(template.path, dest, { recursive: true });
  return { ...template, path: dest };
}

/** Concatenates the `data` of every message of a server stream. */
export async function collectData(stream: AsyncIterable<{ data: Uint8Array }>): Promise<Buffer> {
  const chunks: Buffer[] = [];
  for await (const msg of stream) chunks.push(Buffer.from(msg.data));
  return Buffer.concat(chunks);
}

/** Drains a server stream, for calls that are expected to fail. */
export async function drain(stream: AsyncIterable<unknown>): Promise<number> {
  let n = 0;
  for await (const _ of stream) n++;
  return n;
}

/** Asserts a gRPC failure with an exact code and message. */
export async function expectStatus(promise: Promise<unknown>, code: grpc.status, details: string): Promise<void> {
  await expect(promise).rejects.toMatchObject({ code, details });
}

/** Asserts a gRPC failure with an exact code and a message matching `pattern`. */
export async function expectStatusMatching(promise: Promise<unknown>, code: grpc.status, pattern: RegExp) {
  const err = await promise.then(
    () => {
      throw new Error("expected the call to fail");
    },
    (e: unknown) => e as grpc.ServiceError,
  );
  expect(err.code, err.details).toBe(code);
  expect(err.details).toMatch(pattern);
}

/** `git show-ref --head` output ("" when the repository has no refs at all). */
export function showRefHead(path: string): string {
  try {
    return git(path, ["show-ref", "--head"]);
  } catch (err) {
    if ((err as { status?: number }).status === 1) return "";
    throw err;
  }
}

/** All refs with their values, for equality checks across repositories. */
export function refsOf(path: string): string {
  return git(path, ["for-each-ref", "--format=%(objectname) %(refname)"]);
}

/**
 * Praefect's replica checksum, computed here without the server's code: SHA-1 of each
 * line naming HEAD or a GitLab namespace, XORed as one integer, hex without leading zero
 * bytes, or 40 zeros when nothing counted.
 */
export function independentChecksum(showRefOutput: string): string {
  const counted = /HEAD|(refs\/(heads|tags|keep-around|merge-requests|environments|notes)\/)/;
  let sum = 0n;
  for (const line of showRefOutput.split("\n")) {
    if (line === "" || !counted.test(line)) continue;
    sum ^= BigInt(`0x${createHash("sha1").update(line).digest("hex")}`);
  }
  if (sum === 0n) return "0".repeat(40);
  const hex = sum.toString(16);
  return hex.length % 2 === 0 ? hex : `0${hex}`;
}

export interface TarInput {
  name: string;
  /** Absent for directories. */
  data?: Buffer | string;
  mode?: number;
  type?: "file" | "directory" | "symlink";
  linkname?: string;
}

/** Builds a tar archive in memory, with names taken verbatim (including `../`). */
export async function buildTar(entries: TarInput[]): Promise<Buffer> {
  const pack = tar.pack();
  for (const e of entries) {
    const type = e.type ?? (e.data === undefined ? "directory" : "file");
    if (type === "file") {
      pack.entry({ name: e.name, mode: e.mode ?? 0o644, type }, Buffer.from(e.data ?? ""));
    } else if (type === "symlink") {
      pack.entry({ name: e.name, type, linkname: e.linkname ?? "/" });
    } else {
      pack.entry({ name: e.name, mode: e.mode ?? 0o755, type });
    }
  }
  pack.finalize();
  const chunks: Buffer[] = [];
  for await (const chunk of pack) chunks.push(Buffer.from(chunk as Uint8Array));
  return Buffer.concat(chunks);
}

/** Lists a directory tree: "path" for files, "path/" for directories, without following symlinks. */
export function listTree(root: string, skip: (rel: string) => boolean = () => false): string[] {
  const out: string[] = [];
  const walk = (dir: string) => {
    if (!existsSync(dir)) return;
    for (const name of readdirSync(dir).sort()) {
      const abs = join(dir, name);
      const rel = relative(root, abs);
      if (skip(rel)) continue;
      if (lstatSync(abs).isDirectory()) {
        out.push(`${rel}/`);
        walk(abs);
      } else {
        out.push(rel);
      }
    }
  };
  walk(root);
  return out;
}

/**
 * Everything in the Gitaly process's directory except the inside of its storages and
 * of its runtime directory, plus everything in `extra` directories: what a path escape
 * would change.
 */
export function outsideStorages(gitaly: GitalyProcess, extra: string[] = []): string[] {
  const storageRels = gitaly.storages.map((s) => relative(gitaly.dir, s.path));
  const listing = listTree(
    gitaly.dir,
    (rel) => storageRels.some((s) => rel.startsWith(`${s}/`)) || rel.startsWith("run/") || rel === "gitaly.log",
  );
  return [...listing, ...extra.flatMap((d) => listTree(d).map((p) => `${d}:${p}`))];
}
