import { mkdirSync, mkdtempSync, realpathSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import {
  createEmptyRepository,
  createStandardRepository,
  git,
  LARGE_FILE_SIZE,
  pseudoRandomBytes,
  type StandardRepository,
} from "../../../test/harness/git-fixtures.js";
import { Code, RpcError } from "../../shared/grpc/errors.js";
import { waitFor } from "../../shared/net.js";
import { CatfileCache } from "./catfile.js";
import { GitCommandFactory } from "./command.js";

let base: string;
let repo: StandardRepository;
let other: string;
const factory = new GitCommandFactory();
const caches: CatfileCache[] = [];

function newCache(options?: ConstructorParameters<typeof CatfileCache>[1]): CatfileCache {
  const cache = new CatfileCache(factory, options);
  caches.push(cache);
  return cache;
}

function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

beforeAll(() => {
  base = realpathSync(mkdtempSync(join(tmpdir(), "catfile-test-")));
  repo = createStandardRepository(join(base, "repo.git"));
  other = createEmptyRepository(join(base, "other.git")).path;
  git(other, ["hash-object", "-w", "--stdin"], "other repository\n");
});

afterEach(async () => {
  await Promise.all(caches.splice(0).map((c) => c.close()));
});

afterAll(() => {
  rmSync(base, { recursive: true, force: true });
});

describe("CatfileCache", () => {
  it("reads commits, trees, tags and blobs byte for byte", async () => {
    const reader = await newCache().reader(repo.path);
    const commit = await reader.object(repo.commits.initial);
    expect(commit?.type).toBe("commit");
    expect(commit?.oid).toBe(repo.commits.initial);
    expect(commit?.data.toString()).toBe(git(repo.path, ["cat-file", "commit", repo.commits.initial]));
    expect(commit?.size).toBe(commit?.data.length);

    const binary = await reader.object(`main:${repo.binaryFile.path}`);
    expect(binary?.type).toBe("blob");
    expect(binary?.data.equals(repo.binaryFile.content)).toBe(true);

    const tree = await reader.info("main^{tree}");
    expect(tree?.type).toBe("tree");

    const tag = await reader.info(`refs/tags/${repo.tags.annotated.name}`);
    expect(tag?.type).toBe("tag");
    const readme = await reader.object("main:README.md");
    expect(readme?.data.toString()).toBe("# Fixture repository\n\nBuilt by test/harness/git-fixtures.ts.\n");
  });

  it("reads the 10.5 MiB blob intact, between small reads on the same process", async () => {
    const reader = await newCache().reader(repo.path);
    const [before, large, after] = await Promise.all([
      reader.object("main:README.md"),
      reader.object(`large-file:${repo.largeFile.path}`),
      reader.object(`main:${repo.binaryFile.path}`),
    ]);
    expect(large?.size).toBe(LARGE_FILE_SIZE);
    expect(large?.data.length).toBe(LARGE_FILE_SIZE);
    expect(large?.data.equals(pseudoRandomBytes(LARGE_FILE_SIZE))).toBe(true);
    expect(before?.data.toString()).toMatch(/^# Fixture repository/);
    expect(after?.data.equals(repo.binaryFile.content)).toBe(true);
  });

  it("returns null for missing objects, including paths with newlines and spaces", async () => {
    const reader = await newCache().reader(repo.path);
    expect(await reader.info("0".repeat(40))).toBeNull();
    expect(await reader.object("refs/heads/does-not-exist")).toBeNull();
    expect(await reader.object("main:no such\nfile")).toBeNull();
    expect(await reader.info("main:missing missing")).toBeNull();
    // The process is still in sync afterwards.
    expect((await reader.info("main"))?.oid).toBe(repo.branches.main);
  });

  it("returns null for a path that resolves to an absent object (a submodule commit)", async () => {
    const absent = "1234567890123456789012345678901234567890";
    const tree = git(repo.path, ["mktree"], `160000 commit ${absent}\tsub\n`).trim();
    const reader = await newCache().reader(repo.path);
    expect(await reader.info(`${tree}:sub`)).toBeNull();
    expect(await reader.object(`${tree}:sub`)).toBeNull();
    expect((await reader.info(tree))?.type).toBe("tree");
  });

  it("refuses revisions that could break the batch protocol or act as options", async () => {
    const reader = await newCache().reader(repo.path);
    for (const revision of ["main\0info HEAD", "--batch-all-objects", "main extra", "-"]) {
      const err = await reader.info(revision).then(
        () => null,
        (e: unknown) => e,
      );
      expect(err, revision).toBeInstanceOf(RpcError);
      expect((err as RpcError).code).toBe(Code.INVALID_ARGUMENT);
    }
    expect((await reader.info("main"))?.type).toBe("commit");
  });

  it("serves 50 parallel reads from one process", async () => {
    const cache = newCache();
    const reader = await cache.reader(repo.path);
    const revisions = [
      repo.commits.initial,
      repo.commits.second,
      `main:${repo.binaryFile.path}`,
      "main:README.md",
      "0".repeat(40),
    ];
    const results = await Promise.all(Array.from({ length: 50 }, (_, i) => reader.object(revisions[i % 5] as string)));
    for (let i = 0; i < 50; i++) {
      const result = results[i];
      if (i % 5 === 4) expect(result).toBeNull();
      else if (i % 5 === 2) expect(result?.data.equals(repo.binaryFile.content)).toBe(true);
      else if (i % 5 === 0) expect(result?.oid).toBe(repo.commits.initial);
      else if (i % 5 === 1) expect(result?.oid).toBe(repo.commits.second);
      else expect(result?.data.toString()).toMatch(/^# Fixture repository/);
    }
    expect(cache.stats()).toMatchObject({ processes: 1, spawned: 1 });
  });

  it("shares the process between readers of one repository", async () => {
    const cache = newCache();
    await (await cache.reader(repo.path)).info("main");
    const pid = cache.pid(repo.path);
    await (await cache.reader(repo.path)).info("main");
    expect(cache.pid(repo.path)).toBe(pid);
    expect(cache.stats()).toMatchObject({ spawned: 1, hits: 1, misses: 1 });
  });

  it("stops a process after the idle TTL", async () => {
    const cache = newCache({ idleTtlMs: 50 });
    const reader = await cache.reader(repo.path);
    expect((await reader.info("main"))?.type).toBe("commit");
    const pid = cache.pid(repo.path) as number;
    expect(pid).toBeGreaterThan(0);
    await waitFor("idle cat-file to exit", async () => !isAlive(pid), { intervalMs: 20 });
    expect(cache.pid(repo.path)).toBeUndefined();
    // The reader still works: it starts a new process.
    expect((await reader.info("main"))?.type).toBe("commit");
    expect(cache.pid(repo.path)).not.toBe(pid);
  });

  it("evicts the least recently used process beyond maxEntries", async () => {
    const cache = newCache({ maxEntries: 1 });
    const first = await cache.reader(repo.path);
    expect((await first.info("main"))?.type).toBe("commit");
    const firstPid = cache.pid(repo.path) as number;
    const second = await cache.reader(other);
    expect(await second.info("HEAD")).toBeNull();
    expect(cache.stats().processes).toBe(1);
    expect(cache.pid(repo.path)).toBeUndefined();
    expect(cache.pid(other)).toBeGreaterThan(0);
    await waitFor("evicted cat-file to exit", async () => !isAlive(firstPid), { intervalMs: 20 });
    expect((await first.info("main"))?.oid).toBe(repo.branches.main);
  });

  it("rejects requests when the process dies and recovers with a new one", async () => {
    const cache = newCache();
    const reader = await cache.reader(repo.path);
    await reader.info("main");
    const pid = cache.pid(repo.path) as number;
    const pending = reader.object(`large-file:${repo.largeFile.path}`);
    process.kill(pid, "SIGKILL");
    // Either it was answered before the kill landed, or it fails; it must not hang.
    await pending.then(
      (obj) => expect(obj?.size).toBe(LARGE_FILE_SIZE),
      (err: unknown) => expect(err).toBeInstanceOf(Error),
    );
    await waitFor("dead process to leave the cache", async () => cache.pid(repo.path) !== pid, { intervalMs: 20 });
    expect((await reader.info("main"))?.oid).toBe(repo.branches.main);
    expect(cache.pid(repo.path)).not.toBe(pid);
  });

  it("surfaces a broken repository as an error, not as missing objects", async () => {
    const reader = await newCache().reader(join(base, "not-a-repo"));
    await expect(reader.info("main")).rejects.toThrow(/cat-file/);
  });

  it("reads a quarantine's objects only through a reader for that quarantine", async () => {
    const quarantine = { objectDirectory: "objects/incoming-test", alternateObjectDirectories: ["objects"] };
    mkdirSync(join(repo.path, quarantine.objectDirectory));
    const { stdout } = await factory.run({
      repoPath: repo.path,
      subcommand: "hash-object",
      flags: ["-w", "--stdin"],
      stdin: "only in quarantine\n",
      objectDirectories: quarantine,
    });
    const oid = stdout.toString().trim();
    const cache = newCache();
    const plain = await cache.reader(repo.path);
    const quarantined = await cache.reader(repo.path, { objectDirectories: quarantine });
    expect(await plain.info(oid)).toBeNull();
    expect((await quarantined.object(oid))?.data.toString()).toBe("only in quarantine\n");
    // Objects of the repository itself stay visible through the alternate.
    expect((await quarantined.info("main"))?.oid).toBe(repo.branches.main);
    expect(cache.stats().processes).toBe(2);
  });

  it("kills everything on close", async () => {
    const cache = newCache();
    await (await cache.reader(repo.path)).info("main");
    await (await cache.reader(other)).info("HEAD");
    const pids = [cache.pid(repo.path), cache.pid(other)] as number[];
    await cache.close();
    for (const pid of pids) expect(isAlive(pid)).toBe(false);
    await expect(cache.reader(repo.path)).rejects.toThrow(/closed/);
  });
});

describe("CatfileCache relative path-scoped revisions", () => {
  it("answers HEAD:./x as missing and keeps serving other requests", async () => {
    const dir = mkdtempSync(join(tmpdir(), "catfile-rel-"));
    const fixture = createStandardRepository(join(dir, "repo.git"));
    const cache = new CatfileCache(new GitCommandFactory());
    try {
      const reader = await cache.reader(fixture.path);
      const [a, b, c] = await Promise.all([
        reader.info("HEAD:./README.md"),
        reader.info("HEAD:../README.md"),
        reader.info("HEAD:README.md"),
      ]);
      expect(a).toBeNull();
      expect(b).toBeNull();
      expect(c?.type).toBe("blob");
    } finally {
      await cache.close();
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
