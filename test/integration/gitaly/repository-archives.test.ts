// The RepositoryService RPCs that move whole files or archives, against a running Gitaly
// process: GetConfig, GetSnapshot, Get/SetCustomHooks, OptimizeRepository, and
// CreateBundle/FetchBundle. Archives are checked with the real tar and git.
import { execFileSync } from "node:child_process";
import {
  appendFileSync,
  existsSync,
  mkdirSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  rmSync,
  statSync,
  writeFileSync,
} from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import * as grpc from "@grpc/grpc-js";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { OptimizeRepositoryRequest_Strategy as Strategy } from "../../../src/gen/repository_pb.js";
import {
  createEmptyRepository,
  createManyRefsRepository,
  createStandardRepository,
  git,
  isolatedGitEnv,
  type StandardRepository,
} from "../../harness/git-fixtures.js";
import { type GitalyProcess, startGitaly } from "../../harness/gitaly.js";
import {
  buildTar,
  collectData,
  copyFixture,
  drain,
  expectStatus,
  expectStatusMatching,
  listTree,
  outsideStorages,
  type RepositoryClient,
  refsOf,
  repo,
  repositoryClient,
  showRefHead,
  storagePath,
} from "./repository-helpers.js";

let gitaly: GitalyProcess;
let client: RepositoryClient;
/** Scratch space outside every storage: extracted archives, bundles, escape targets. */
let scratch: string;
let counter = 0;
let template: StandardRepository;

beforeAll(async () => {
  gitaly = await startGitaly();
  client = repositoryClient(gitaly);
  scratch = mkdtempSync(join(tmpdir(), "gitaly-archives-"));
  template = createStandardRepository(join(scratch, "template.git"));
});

afterAll(async () => {
  await gitaly?.stop();
  if (scratch) rmSync(scratch, { recursive: true, force: true });
});

function freshStandard(): { relativePath: string; fixture: StandardRepository } {
  const relativePath = `archives/standard-${++counter}.git`;
  return { relativePath, fixture: copyFixture(template, storagePath(gitaly, relativePath)) };
}

function freshDir(name: string): string {
  const dir = join(scratch, `${name}-${++counter}`);
  mkdirSync(dir, { recursive: true });
  return dir;
}

/** Extracts a tar with GNU tar, as an operator restoring a snapshot would. */
function untar(archive: Buffer, into: string): void {
  execFileSync("tar", ["-x", "-f", "-", "-C", into], { input: archive });
}

function tarList(archive: Buffer): string[] {
  return execFileSync("tar", ["-t", "-v", "-f", "-"], { input: archive, encoding: "utf8" })
    .trim()
    .split("\n")
    .filter((l) => l !== "");
}

function fsck(path: string): string {
  return execFileSync("git", ["--git-dir", path, "fsck", "--full", "--strict", "--no-dangling"], {
    env: isolatedGitEnv(),
    encoding: "utf8",
    stdio: ["ignore", "pipe", "pipe"],
  });
}

const tmpEntries = () => {
  const dir = storagePath(gitaly, "+gitaly/tmp");
  return existsSync(dir) ? readdirSync(dir) : [];
};

describe("GetConfig", () => {
  it("streams the repository's config file byte for byte", async () => {
    const { relativePath, fixture } = freshStandard();
    const got = await collectData(client.getConfig({ repository: repo(gitaly, relativePath) }));
    expect(got.equals(readFileSync(join(fixture.path, "config")))).toBe(true);
    expect(got.toString()).toContain("bare = true");
  });

  it("splits a large config into several messages", async () => {
    const { relativePath, fixture } = freshStandard();
    appendFileSync(join(fixture.path, "config"), `# ${"x".repeat(100)}\n`.repeat(3000));
    let messages = 0;
    const chunks: Buffer[] = [];
    for await (const msg of client.getConfig({ repository: repo(gitaly, relativePath) })) {
      messages++;
      chunks.push(Buffer.from(msg.data));
    }
    expect(messages).toBeGreaterThan(1);
    expect(Buffer.concat(chunks).equals(readFileSync(join(fixture.path, "config")))).toBe(true);
  });

  it("is NotFound when the repository has no config file", async () => {
    const { relativePath, fixture } = freshStandard();
    rmSync(join(fixture.path, "config"));
    await expectStatus(
      drain(client.getConfig({ repository: repo(gitaly, relativePath) })),
      grpc.status.NOT_FOUND,
      `opening gitconfig: open ${join(fixture.path, "config")}: no such file or directory`,
    );
  });
});

describe("GetSnapshot", () => {
  async function snapshotInto(relativePath: string): Promise<{ archive: Buffer; restored: string }> {
    const archive = await collectData(client.getSnapshot({ repository: repo(gitaly, relativePath) }));
    const restored = freshDir("restored");
    untar(archive, restored);
    return { archive, restored };
  }

  it("restores, with tar, to a repository git fsck accepts and with the same refs", async () => {
    const { relativePath, fixture } = freshStandard();
    // Mix loose and packed refs.
    git(fixture.path, ["pack-refs", "--all"]);
    git(fixture.path, ["update-ref", "refs/heads/loose", fixture.commits.initial]);
    const { archive, restored } = await snapshotInto(relativePath);
    expect(fsck(restored)).toBe("");
    expect(showRefHead(restored)).toBe(showRefHead(fixture.path));
    expect(git(restored, ["symbolic-ref", "HEAD"]).trim()).toBe("refs/heads/main");
    expect(git(restored, ["cat-file", "-s", `${fixture.branches["large-file"]}:large.bin`]).trim()).toBe(
      String(fixture.largeFile.size),
    );
    // Only what git needs: no hooks, no description, no info/, and a config reduced to the format.
    const names = tarList(archive).map((l) => l.split(/\s+/).at(-1) ?? "");
    expect(names).toContain("HEAD");
    expect(names).toContain("packed-refs");
    expect(names).toContain("config");
    expect(names.filter((n) => /^(hooks|description|info|custom_hooks)(\/|$)/.test(n))).toEqual([]);
    expect(readFileSync(join(restored, "config"), "utf8")).toBe("[core]\n\trepositoryformatversion = 0\n");
  });

  it("includes packs after housekeeping and leaves out garbage in objects/", async () => {
    const { relativePath, fixture } = freshStandard();
    await client.optimizeRepository({ repository: repo(gitaly, relativePath), strategy: Strategy.EAGER });
    writeFileSync(join(fixture.path, "objects", "garbage.tmp"), "not an object");
    const { archive, restored } = await snapshotInto(relativePath);
    expect(fsck(restored)).toBe("");
    expect(showRefHead(restored)).toBe(showRefHead(fixture.path));
    const names = tarList(archive).map((l) => l.split(/\s+/).at(-1) ?? "");
    expect(names.some((n) => /^objects\/pack\/pack-[0-9a-f]{40}\.pack$/.test(n))).toBe(true);
    expect(names.some((n) => n.includes("garbage"))).toBe(false);
    // Derived files are rebuilt by housekeeping on the new node, not copied.
    const files = names.filter((n) => !n.endsWith("/"));
    expect(files.filter((n) => n.startsWith("objects/info/"))).toEqual([]);
    expect(files.filter((n) => /\.(bitmap|rev)$/.test(n))).toEqual([]);
  });

  it("keeps the SHA-256 object format", async () => {
    const relativePath = "archives/sha256.git";
    const source = createStandardRepository(storagePath(gitaly, relativePath), "sha256");
    const { restored } = await snapshotInto(relativePath);
    expect(git(restored, ["rev-parse", "--show-object-format"]).trim()).toBe("sha256");
    expect(fsck(restored)).toBe("");
    expect(showRefHead(restored)).toBe(showRefHead(source.path));
  });

  it("of an empty repository is still a repository", async () => {
    createEmptyRepository(storagePath(gitaly, "archives/empty-snapshot.git"));
    const { restored } = await snapshotInto("archives/empty-snapshot.git");
    for (const dir of ["objects", "refs", "HEAD"]) expect(existsSync(join(restored, dir)), dir).toBe(true);
    expect(git(restored, ["symbolic-ref", "HEAD"]).trim()).toBe("refs/heads/main");
    expect(showRefHead(restored)).toBe("");
    expect(fsck(restored)).toBe("");
  });
});

describe("custom hooks", () => {
  const hookTar = (script: string) =>
    buildTar([
      { name: "custom_hooks/" },
      { name: "custom_hooks/pre-receive", data: `#!/bin/sh\n${script}\n`, mode: 0o755 },
      { name: "custom_hooks/post-receive.d/" },
      { name: "custom_hooks/post-receive.d/notify", data: "#!/bin/sh\necho notify\n", mode: 0o750 },
      { name: "custom_hooks/README", data: "not executable\n", mode: 0o644 },
    ]);

  const mode = (path: string) => statSync(path).mode & 0o777;

  it("round-trip through SetCustomHooks and GetCustomHooks with their executable bits", async () => {
    const { relativePath, fixture } = freshStandard();
    await client.setCustomHooks([{ repository: repo(gitaly, relativePath), data: await hookTar("exit 0") }]);
    const hooks = join(fixture.path, "custom_hooks");
    expect(readFileSync(join(hooks, "pre-receive"), "utf8")).toBe("#!/bin/sh\nexit 0\n");
    expect(mode(join(hooks, "pre-receive"))).toBe(0o755);
    expect(mode(join(hooks, "post-receive.d/notify"))).toBe(0o750);
    expect(mode(join(hooks, "README"))).toBe(0o644);

    const archive = await collectData(client.getCustomHooks({ repository: repo(gitaly, relativePath) }));
    const out = freshDir("hooks");
    untar(archive, out);
    expect(listTree(out)).toEqual([
      "custom_hooks/",
      "custom_hooks/README",
      "custom_hooks/post-receive.d/",
      "custom_hooks/post-receive.d/notify",
      "custom_hooks/pre-receive",
    ]);
    expect(readFileSync(join(out, "custom_hooks/pre-receive"), "utf8")).toBe("#!/bin/sh\nexit 0\n");
    expect(mode(join(out, "custom_hooks/pre-receive"))).toBe(0o755);
    expect(mode(join(out, "custom_hooks/post-receive.d/notify"))).toBe(0o750);
    expect(tmpEntries()).toEqual([]);
  });

  it("replaces the whole set, also when sent in many small messages", async () => {
    const { relativePath, fixture } = freshStandard();
    await client.setCustomHooks([{ repository: repo(gitaly, relativePath), data: await hookTar("exit 0") }]);
    const next = await buildTar([{ name: "custom_hooks/update", data: "#!/bin/sh\nexit 1\n", mode: 0o755 }]);
    const messages = [];
    for (let off = 0; off < next.length; off += 100) {
      messages.push({
        ...(off === 0 ? { repository: repo(gitaly, relativePath) } : {}),
        data: next.subarray(off, off + 100),
      });
    }
    await client.setCustomHooks(messages);
    expect(listTree(join(fixture.path, "custom_hooks"))).toEqual(["update"]);
    expect(mode(join(fixture.path, "custom_hooks/update"))).toBe(0o755);
  });

  it("ignores entries outside custom_hooks/", async () => {
    const { relativePath, fixture } = freshStandard();
    const configBefore = readFileSync(join(fixture.path, "config"));
    const archive = await buildTar([
      { name: "config", data: "[core]\n\thooksPath = /tmp\n" },
      { name: "hooks/pre-receive", data: "#!/bin/sh\nexit 1\n", mode: 0o755 },
      { name: "custom_hooks/pre-receive", data: "#!/bin/sh\nexit 0\n", mode: 0o755 },
    ]);
    await client.setCustomHooks([{ repository: repo(gitaly, relativePath), data: archive }]);
    expect(readFileSync(join(fixture.path, "config")).equals(configBefore)).toBe(true);
    expect(existsSync(join(fixture.path, "hooks/pre-receive"))).toBe(false);
    expect(listTree(join(fixture.path, "custom_hooks"))).toEqual(["pre-receive"]);
  });

  it("an empty archive leaves an empty custom_hooks directory, and GetCustomHooks then sends an empty one", async () => {
    const { relativePath, fixture } = freshStandard();
    await client.setCustomHooks([{ repository: repo(gitaly, relativePath), data: await hookTar("exit 0") }]);
    await client.setCustomHooks([{ repository: repo(gitaly, relativePath), data: new Uint8Array() }]);
    expect(readdirSync(join(fixture.path, "custom_hooks"))).toEqual([]);
    const archive = await collectData(client.getCustomHooks({ repository: repo(gitaly, relativePath) }));
    expect(tarList(archive).map((l) => l.split(/\s+/).at(-1))).toEqual(["custom_hooks/"]);
  });

  it("GetCustomHooks sends no data for a repository without hooks", async () => {
    const { relativePath } = freshStandard();
    const archive = await collectData(client.getCustomHooks({ repository: repo(gitaly, relativePath) }));
    expect(archive.length).toBe(0);
  });

  it.each([
    ["custom_hooks/../../escaped", [{ name: "custom_hooks/../../escaped", data: "x" }]],
    ["../escaped", [{ name: "../escaped", data: "x" }]],
    ["an absolute path", [{ name: "/ABS/escaped", data: "x" }]],
    ["a symlink", [{ name: "custom_hooks/link", type: "symlink" as const, linkname: "/etc" }]],
    [
      "a good hook followed by an escape",
      [
        { name: "custom_hooks/pre-receive", data: "#!/bin/sh\nexit 1\n", mode: 0o755 },
        { name: "custom_hooks/../../../escaped", data: "x" },
      ],
    ],
  ])("refuse an archive with %s, keep the old hooks and write nothing outside", async (_name, entries) => {
    const { relativePath, fixture } = freshStandard();
    await client.setCustomHooks([{ repository: repo(gitaly, relativePath), data: await hookTar("exit 0") }]);
    const hooksBefore = listTree(join(fixture.path, "custom_hooks"));
    const repoBefore = listTree(fixture.path);
    const outsideBefore = outsideStorages(gitaly, [scratch]);
    const archive = await buildTar(entries.map((e) => ({ ...e, name: e.name.replace("/ABS", scratch) })));
    await expectStatusMatching(
      client.setCustomHooks([{ repository: repo(gitaly, relativePath), data: archive }]),
      grpc.status.INVALID_ARGUMENT,
      /^extracting hooks: (invalid file path in tar|unsupported tar entry type)/,
    );
    expect(listTree(join(fixture.path, "custom_hooks"))).toEqual(hooksBefore);
    expect(readFileSync(join(fixture.path, "custom_hooks/pre-receive"), "utf8")).toBe("#!/bin/sh\nexit 0\n");
    expect(listTree(fixture.path)).toEqual(repoBefore);
    expect(outsideStorages(gitaly, [scratch])).toEqual(outsideBefore);
    expect(existsSync(join(storagePath(gitaly), "escaped"))).toBe(false);
    expect(tmpEntries()).toEqual([]);
  });

  it("refuses data that is not a tar archive", async () => {
    const { relativePath, fixture } = freshStandard();
    await expectStatusMatching(
      client.setCustomHooks([{ repository: repo(gitaly, relativePath), data: Buffer.alloc(2048, "garbage") }]),
      grpc.status.INTERNAL,
      /^setting custom hooks: /,
    );
    expect(existsSync(join(fixture.path, "custom_hooks"))).toBe(false);
    expect(tmpEntries()).toEqual([]);
  });
});

describe("OptimizeRepository", () => {
  const countObjects = (path: string) =>
    Object.fromEntries(
      git(path, ["count-objects", "-v"])
        .trim()
        .split("\n")
        .map((l) => {
          const [k, v] = l.split(": ");
          return [k, Number(v)];
        }),
    ) as Record<string, number>;

  it("eager: packs every loose object and ref, writes bitmap and commit-graph, keeps all refs", async () => {
    const { relativePath, fixture } = freshStandard();
    const refsBefore = refsOf(fixture.path);
    expect(countObjects(fixture.path).count).toBe(23);
    await client.optimizeRepository({ repository: repo(gitaly, relativePath), strategy: Strategy.EAGER });
    const after = countObjects(fixture.path);
    expect(after.count).toBe(0);
    expect(after.packs).toBe(1);
    expect(after["in-pack"]).toBe(23);
    expect(fsck(fixture.path)).toBe("");
    expect(refsOf(fixture.path)).toBe(refsBefore);
    for (const line of refsBefore.trim().split("\n")) {
      const [oid, name] = line.split(" ") as [string, string];
      expect(git(fixture.path, ["rev-parse", "--verify", name]).trim()).toBe(oid);
    }
    expect(existsSync(join(fixture.path, "packed-refs"))).toBe(true);
    expect(listTree(join(fixture.path, "refs")).filter((p) => !p.endsWith("/"))).toEqual([]);
    const packDir = readdirSync(join(fixture.path, "objects/pack"));
    expect(packDir.filter((n) => n.endsWith(".bitmap"))).toHaveLength(1);
    expect(existsSync(join(fixture.path, "objects/info/commit-graphs/commit-graph-chain"))).toBe(true);
    expect(git(fixture.path, ["rev-list", "--count", "--all"]).trim()).toBe("7");
  });

  it("eager keeps recent unreachable objects (the grace period protects concurrent pushes)", async () => {
    const { relativePath, fixture } = freshStandard();
    const unreachable = git(fixture.path, ["hash-object", "-w", "--stdin"], "nobody points here\n").trim();
    await client.optimizeRepository({ repository: repo(gitaly, relativePath), strategy: Strategy.EAGER });
    expect(git(fixture.path, ["cat-file", "-p", unreachable])).toBe("nobody points here\n");
  });

  it("heuristical: packs the fixture's loose objects and leaves a valid repository", async () => {
    const { relativePath, fixture } = freshStandard();
    const refsBefore = refsOf(fixture.path);
    await client.optimizeRepository({ repository: repo(gitaly, relativePath) });
    expect(countObjects(fixture.path).count).toBe(0);
    expect(fsck(fixture.path)).toBe("");
    expect(refsOf(fixture.path)).toBe(refsBefore);
    // Nothing left to do: a second run changes nothing.
    const packs = readdirSync(join(fixture.path, "objects/pack")).sort();
    await client.optimizeRepository({ repository: repo(gitaly, relativePath), strategy: Strategy.HEURISTICAL });
    expect(readdirSync(join(fixture.path, "objects/pack")).sort()).toEqual(packs);
  });

  it("works on empty repositories and on 1,000 refs", async () => {
    createEmptyRepository(storagePath(gitaly, "archives/optimize-empty.git"));
    await client.optimizeRepository({
      repository: repo(gitaly, "archives/optimize-empty.git"),
      strategy: Strategy.EAGER,
    });
    expect(showRefHead(storagePath(gitaly, "archives/optimize-empty.git"))).toBe("");
    const many = createManyRefsRepository(storagePath(gitaly, "archives/optimize-many.git"), 1000);
    const before = refsOf(many.path);
    await client.optimizeRepository({ repository: repo(gitaly, "archives/optimize-many.git") });
    expect(refsOf(many.path)).toBe(before);
    // Heuristics pack refs once there are many loose ones.
    expect(listTree(join(many.path, "refs/heads")).filter((p) => !p.endsWith("/"))).toEqual([]);
    expect(fsck(many.path)).toBe("");
  });

  it.each([
    [Strategy.OFFLOADING, grpc.status.UNIMPLEMENTED, "offloading feature not enabled"],
    [Strategy.REHYDRATION, grpc.status.INVALID_ARGUMENT, "offloading configuration missing sink URL"],
    [42, grpc.status.INVALID_ARGUMENT, "unsupported optimization strategy 42"],
  ])("refuses strategy %s", async (strategy, code, details) => {
    const { relativePath } = freshStandard();
    await expectStatus(client.optimizeRepository({ repository: repo(gitaly, relativePath), strategy }), code, details);
  });
});

describe("CreateBundle and FetchBundle", () => {
  async function bundleOf(relativePath: string): Promise<Buffer> {
    return collectData(client.createBundle({ repository: repo(gitaly, relativePath) }));
  }

  function chunked(data: Buffer, size: number): Buffer[] {
    const out: Buffer[] = [];
    for (let off = 0; off < data.length; off += size) out.push(data.subarray(off, off + size));
    return out;
  }

  it("CreateBundle streams a complete bundle git can verify", async () => {
    const { relativePath, fixture } = freshStandard();
    const bundle = await bundleOf(relativePath);
    const file = join(freshDir("bundle"), "repo.bundle");
    writeFileSync(file, bundle);
    const verifier = createEmptyRepository(join(freshDir("verify"), "v.git")).path;
    const verify = execFileSync("git", ["--git-dir", verifier, "bundle", "verify", file], {
      env: isolatedGitEnv(),
      encoding: "utf8",
      stdio: ["ignore", "pipe", "pipe"],
    });
    expect(verify).toContain("The bundle records a complete history");
    const heads = git(verifier, ["bundle", "list-heads", file]);
    const expected = `${fixture.commits.merge} HEAD\n${refsOf(fixture.path)}`;
    expect(heads.trim().split("\n").sort()).toEqual(expected.trim().split("\n").sort());
  });

  it("round-trips into a fresh repository with FetchBundle, and update_head follows the source's HEAD", async () => {
    const { relativePath, fixture } = freshStandard();
    git(fixture.path, ["symbolic-ref", "HEAD", "refs/heads/feature"]);
    const bundle = await bundleOf(relativePath);

    await client.createRepository({ repository: repo(gitaly, "archives/fetched-head.git") });
    const [first, ...rest] = chunked(bundle, 1024 * 1024);
    await client.fetchBundle([
      { repository: repo(gitaly, "archives/fetched-head.git"), updateHead: true, data: first },
      ...rest.map((data) => ({ data })),
    ]);
    const target = storagePath(gitaly, "archives/fetched-head.git");
    expect(refsOf(target)).toBe(refsOf(fixture.path));
    expect(git(target, ["symbolic-ref", "HEAD"]).trim()).toBe("refs/heads/feature");
    expect(fsck(target)).toBe("");

    await client.createRepository({ repository: repo(gitaly, "archives/fetched-nohead.git") });
    await client.fetchBundle([{ repository: repo(gitaly, "archives/fetched-nohead.git"), data: bundle }]);
    const noHead = storagePath(gitaly, "archives/fetched-nohead.git");
    expect(refsOf(noHead)).toBe(refsOf(fixture.path));
    expect(git(noHead, ["symbolic-ref", "HEAD"]).trim()).toBe("refs/heads/main");
    expect(tmpEntries()).toEqual([]);
  });

  it("update_head prefers main when several branches match the bundle's HEAD", async () => {
    const { relativePath, fixture } = freshStandard();
    git(fixture.path, ["update-ref", "refs/heads/aaa-same-as-main", fixture.commits.merge]);
    const bundle = await bundleOf(relativePath);
    await client.createRepository({
      repository: repo(gitaly, "archives/fetched-prefers-main.git"),
      defaultBranch: Buffer.from("other"),
    });
    await client.fetchBundle([
      { repository: repo(gitaly, "archives/fetched-prefers-main.git"), updateHead: true, data: bundle },
    ]);
    expect(git(storagePath(gitaly, "archives/fetched-prefers-main.git"), ["symbolic-ref", "HEAD"]).trim()).toBe(
      "refs/heads/main",
    );
  });

  it("CreateBundle of a repository without refs is FailedPrecondition and sends no data", async () => {
    createEmptyRepository(storagePath(gitaly, "archives/bundle-empty.git"));
    const received: number[] = [];
    const err = await (async () => {
      for await (const msg of client.createBundle({ repository: repo(gitaly, "archives/bundle-empty.git") })) {
        received.push(msg.data.length);
      }
    })().then(
      () => undefined,
      (e: grpc.ServiceError) => e,
    );
    expect(err?.code).toBe(grpc.status.FAILED_PRECONDITION);
    expect(err?.details).toBe("create bundle: refusing to create empty bundle");
    expect(received).toEqual([]);
  });

  it("FetchBundle of garbage fails, changes no ref and cleans up", async () => {
    const { relativePath, fixture } = freshStandard();
    const before = refsOf(fixture.path);
    await expectStatusMatching(
      client.fetchBundle([{ repository: repo(gitaly, relativePath), data: Buffer.from("not a bundle\n") }]),
      grpc.status.INTERNAL,
      /^fetch bundle: /,
    );
    expect(refsOf(fixture.path)).toBe(before);
    expect(tmpEntries()).toEqual([]);
  });

  it("FetchBundle into a missing repository is NotFound", async () => {
    const { relativePath } = freshStandard();
    const bundle = await bundleOf(relativePath);
    await expectStatus(
      client.fetchBundle([{ repository: repo(gitaly, "archives/not-created.git"), data: bundle }]),
      grpc.status.NOT_FOUND,
      "repository not found",
    );
    expect(existsSync(storagePath(gitaly, "archives/not-created.git"))).toBe(false);
    expect(tmpEntries()).toEqual([]);
  });
});
