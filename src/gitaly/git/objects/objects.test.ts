import { execFileSync } from "node:child_process";
import { mkdtempSync, realpathSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import {
  createEmptyRepository,
  createStandardRepository,
  git,
  isolatedGitEnv,
  type StandardRepository,
} from "../../../../test/harness/git-fixtures.js";
import { TreeEntry_EntryType } from "../../../gen/commit_pb.js";
import { SignatureType } from "../../../gen/shared_pb.js";
import { CatfileCache } from "../catfile.js";
import { GitCommandFactory } from "../command.js";
import { FALLBACK_DATE_SECONDS, parseAuthor, parseDateSeconds } from "./author.js";
import { cleanPath, dirPath, joinPath } from "./bytes.js";
import { MAX_COMMIT_OR_TAG_MESSAGE_SIZE, parseCommit } from "./commit.js";
import { readAnnotatedTag, readCommit, TreeEntryFinder, treeEntries } from "./read.js";
import { parseTag, trimTagMessage } from "./tag.js";
import { parseTrailers } from "./trailers.js";
import { entryTypeOfMode, parseMode, parseTree } from "./tree.js";

let base: string;
let repo: StandardRepository;
let scratch: string;
const factory = new GitCommandFactory();
const cache = new CatfileCache(factory);

/** Writes a raw object exactly as given (no format checks), returning its ID. */
function writeRaw(type: string, content: string | Buffer): string {
  return git(scratch, ["hash-object", "-t", type, "-w", "--literally", "--stdin"], content).trim();
}

/** An object's content, byte for byte. */
function rawIn(repoPath: string, type: string, oid: string): Buffer {
  return execFileSync("git", ["--git-dir", repoPath, "cat-file", type, oid], { env: isolatedGitEnv() });
}

function raw(oid: string): Buffer {
  const type = git(repo.path, ["cat-file", "-t", oid]).trim();
  return rawIn(repo.path, type, oid);
}

function text(bytes: Uint8Array | undefined): string {
  return Buffer.from(bytes ?? new Uint8Array()).toString("utf8");
}

beforeAll(() => {
  base = realpathSync(mkdtempSync(join(tmpdir(), "objects-test-")));
  repo = createStandardRepository(join(base, "repo.git"));
  scratch = createEmptyRepository(join(base, "scratch.git")).path;
});

afterAll(async () => {
  await cache.close();
  rmSync(base, { recursive: true, force: true });
});

describe("parseCommit", () => {
  it("matches what git log says for every fixture commit", () => {
    for (const oid of Object.values(repo.commits)) {
      const fields = git(repo.path, [
        "log",
        "-1",
        "--date=format:%z",
        "--format=%H%x00%T%x00%P%x00%an%x00%ae%x00%at%x00%ad%x00%cn%x00%ce%x00%ct%x00%cd%x00%s%x00%B",
        oid,
      ]).split("\0");
      const [id, tree, parents, an, ae, at, az, cn, ce, ct, cz, subject, body] = fields as string[];
      const commit = parseCommit(oid, raw(oid));
      expect(commit.id).toBe(id);
      expect(commit.treeId).toBe(tree);
      expect(commit.parentIds).toEqual(parents === "" ? [] : parents?.split(" "));
      expect(text(commit.author?.name)).toBe(an);
      expect(text(commit.author?.email)).toBe(ae);
      expect(commit.author?.date?.seconds).toBe(BigInt(at as string));
      expect(text(commit.author?.timezone)).toBe(az);
      expect(text(commit.committer?.name)).toBe(cn);
      expect(text(commit.committer?.email)).toBe(ce);
      expect(commit.committer?.date?.seconds).toBe(BigInt(ct as string));
      expect(text(commit.committer?.timezone)).toBe(cz);
      expect(text(commit.subject)).toBe(subject);
      // %B plus the newline --format adds after it.
      expect(`${text(commit.body)}\n`).toBe(body);
      expect(commit.bodySize).toBe(BigInt(Buffer.byteLength(body as string) - 1));
      expect(commit.signatureType).toBe(SignatureType.NONE);
    }
  });

  const header = (extra = "") =>
    `tree 4b825dc642cb6eb9a060e54bf8d69288fbee4904\n` +
    "author A U Thor <author@example.com> 1700000000 +0100\n" +
    `committer C O Mitter <committer@example.com> 1700000060 -0230\n${extra}`;

  it("detects PGP, SSH and X509 signatures and ignores headers after them", () => {
    const cases: [string, SignatureType][] = [
      ["-----BEGIN PGP SIGNATURE-----", SignatureType.PGP],
      ["-----BEGIN SSH SIGNATURE-----", SignatureType.SSH],
      ["-----BEGIN SIGNED MESSAGE-----", SignatureType.X509],
      ["-----BEGIN SOMETHING ELSE-----", SignatureType.NONE],
    ];
    for (const [first, type] of cases) {
      const content = `${header(`gpgsig ${first}\n \n abcdef\n -----END-----\nencoding ISO-8859-1\n`)}\nSigned\n`;
      const oid = writeRaw("commit", content);
      const commit = parseCommit(oid, rawIn(scratch, "commit", oid));
      expect(commit.signatureType).toBe(type);
      // A header after the signature is signed payload, not a commit header.
      expect(commit.encoding).toBe("");
      expect(text(commit.subject)).toBe("Signed");
      expect(text(commit.author?.timezone)).toBe("+0100");
      expect(text(commit.committer?.timezone)).toBe("-0230");
    }
  });

  it("keeps the encoding header, strips CR from the subject and truncates long bodies", () => {
    const long = `Subject line\r\n\n${"x".repeat(MAX_COMMIT_OR_TAG_MESSAGE_SIZE + 100)}\n`;
    const commit = parseCommit("0".repeat(40), Buffer.from(`${header("encoding ISO-8859-1\n")}\n${long}`));
    expect(commit.encoding).toBe("ISO-8859-1");
    expect(text(commit.subject)).toBe("Subject line");
    expect(commit.bodySize).toBe(BigInt(Buffer.byteLength(long)));
    expect(commit.body.length).toBe(MAX_COMMIT_OR_TAG_MESSAGE_SIZE);
    expect(text(commit.body)).toBe(long.slice(0, MAX_COMMIT_OR_TAG_MESSAGE_SIZE));
  });

  it("handles a commit without message or blank line", () => {
    const commit = parseCommit("1".repeat(40), Buffer.from(header()));
    expect(commit.subject.length).toBe(0);
    expect(commit.body.length).toBe(0);
    expect(commit.bodySize).toBe(0n);
    expect(commit.treeId).toBe("4b825dc642cb6eb9a060e54bf8d69288fbee4904");
  });
});

describe("parseAuthor", () => {
  it("splits name, email, date and timezone", () => {
    const a = parseAuthor(Buffer.from("Jane Doe <jane@example.com> 1234567890 +0530"));
    expect(text(a.name)).toBe("Jane Doe");
    expect(text(a.email)).toBe("jane@example.com");
    expect(a.date?.seconds).toBe(1234567890n);
    expect(text(a.timezone)).toBe("+0530");
  });

  it("tolerates malformed identities like upstream", () => {
    expect(text(parseAuthor(Buffer.from("no email")).name)).toBe("no email");
    expect(parseAuthor(Buffer.from("no email")).date).toBeUndefined();
    const unterminated = parseAuthor(Buffer.from("Name <open 123 +0000"));
    expect(text(unterminated.name)).toBe("Name");
    expect(unterminated.email.length).toBe(0);
    const noDate = parseAuthor(Buffer.from("Name <e@x>"));
    expect(text(noDate.email)).toBe("e@x");
    expect(noDate.date).toBeUndefined();
    const noZone = parseAuthor(Buffer.from("Name <e@x> 42"));
    expect(noZone.date?.seconds).toBe(42n);
    expect(noZone.timezone.length).toBe(0);
  });

  it("maps unparsable or out-of-range dates to upstream's fallback", () => {
    expect(parseDateSeconds("garbage")).toBe(FALLBACK_DATE_SECONDS);
    expect(parseDateSeconds("-5")).toBe(FALLBACK_DATE_SECONDS);
    expect(parseDateSeconds(String(2 ** 53 + 2))).toBe(FALLBACK_DATE_SECONDS);
    expect(parseDateSeconds("99999999999999999999999")).toBe(FALLBACK_DATE_SECONDS);
    expect(parseDateSeconds("+17")).toBe(17n);
    expect(FALLBACK_DATE_SECONDS).toBe(9223371974719179007n);
  });
});

describe("parseTag", () => {
  it("matches git for-each-ref for the fixture's annotated tag", () => {
    const [oid, object, type, tagger, message] = git(repo.path, [
      "for-each-ref",
      "--format=%(objectname)%00%(object)%00%(type)%00%(taggername)%00%(contents)",
      "refs/tags/v1.1.0",
    ]).split("\0") as string[];
    const { tag, taggedOid, taggedType } = parseTag(oid as string, raw(oid as string));
    expect(tag.id).toBe(oid);
    expect(text(tag.name)).toBe("v1.1.0");
    expect(taggedOid).toBe(object);
    expect(taggedType).toBe(type);
    expect(text(tag.tagger?.name)).toBe(tagger);
    // %(contents) plus the newline for-each-ref adds.
    expect(`${text(tag.message)}\n`).toBe(message);
    expect(tag.signatureType).toBe(SignatureType.NONE);
    trimTagMessage(tag);
    expect(text(tag.message)).toBe("Release 1.1.0");
    expect(tag.messageSize).toBe(13n);
  });

  it("prefers the ref name, detects signatures and caps messages", () => {
    const body = `${"m".repeat(MAX_COMMIT_OR_TAG_MESSAGE_SIZE + 10)}\n-----BEGIN PGP SIGNATURE-----\nabc\n-----END PGP SIGNATURE-----\n\n\n`;
    const content = `object ${repo.commits.merge}\ntype commit\ntag inner\ntagger T <t@x> 1 +0000\n\n${body}`;
    const { tag } = parseTag("2".repeat(40), Buffer.from(content), Buffer.from("outer"));
    expect(text(tag.name)).toBe("outer");
    expect(tag.signatureType).toBe(SignatureType.PGP);
    expect(tag.messageSize).toBe(BigInt(body.length));
    trimTagMessage(tag);
    expect(tag.messageSize).toBe(BigInt(body.length - 3));
    expect(tag.message.length).toBe(MAX_COMMIT_OR_TAG_MESSAGE_SIZE);
  });

  it("reads an annotated tag with its target commit and tags of tags", async () => {
    const reader = await cache.reader(repo.path);
    const tagOid = git(repo.path, ["rev-parse", "refs/tags/v1.1.0"]).trim();
    const tag = await readAnnotatedTag(reader, tagOid, Buffer.from("v1.1.0"));
    expect(tag?.targetCommit?.id).toBe(repo.commits.merge);
    expect(await readAnnotatedTag(reader, repo.commits.merge, Buffer.from("x"))).toBeNull();
  });
});

describe("parseTree", () => {
  it("lists what git ls-tree lists", () => {
    for (const rev of [`${repo.commits.merge}^{tree}`, `${repo.commits.merge}:src`]) {
      const oid = git(repo.path, ["rev-parse", rev]).trim();
      const data = rawIn(repo.path, "tree", oid);
      const expected = git(repo.path, ["ls-tree", "-z", oid])
        .split("\0")
        .filter((l) => l !== "")
        .map((l) => {
          const [meta, name] = l.split("\t") as [string, string];
          const [mode, type, id] = meta.split(" ") as [string, string, string];
          return { mode: parseMode(mode), type, id, name };
        });
      const parsed = parseTree(data, 20).map((e) => ({
        mode: parseMode(e.mode),
        type: {
          [TreeEntry_EntryType.BLOB]: "blob",
          [TreeEntry_EntryType.TREE]: "tree",
          [TreeEntry_EntryType.COMMIT]: "commit",
        }[entryTypeOfMode(parseMode(e.mode))],
        id: e.oid,
        name: e.name.toString("utf8"),
      }));
      expect(parsed).toEqual(expected);
    }
  });

  it("classifies modes like ls-tree", () => {
    expect(entryTypeOfMode(0o160000)).toBe(TreeEntry_EntryType.COMMIT);
    expect(entryTypeOfMode(0o40000)).toBe(TreeEntry_EntryType.TREE);
    expect(entryTypeOfMode(0o100755)).toBe(TreeEntry_EntryType.BLOB);
    expect(entryTypeOfMode(0o120000)).toBe(TreeEntry_EntryType.BLOB);
    expect(() => parseTree(Buffer.from("100644 name\0short"), 20)).toThrow(/truncated/);
  });
});

describe("parseTrailers", () => {
  it("parses git's unfolded trailer output", () => {
    const oid = writeRaw(
      "commit",
      "tree 4b825dc642cb6eb9a060e54bf8d69288fbee4904\nauthor A <a@x> 1 +0000\ncommitter A <a@x> 1 +0000\n\n" +
        "Subject\n\nBody.\n\nSigned-off-by: A <a@x>\nChange-Id: I123\n  continued\n",
    );
    const out = git(scratch, ["show", "--no-patch", "--format=%(trailers:unfold,separator=%x00)", oid]).replace(
      /\n$/,
      "",
    );
    const trailers = parseTrailers(Buffer.from(out));
    expect(trailers.map((t) => [text(t.key), text(t.value)])).toEqual([
      ["Signed-off-by", "A <a@x>"],
      ["Change-Id", "I123 continued"],
    ]);
  });

  it("stops at oversized keys or values and at 64 trailers", () => {
    expect(parseTrailers(Buffer.from(`a: b\0${"k".repeat(129)}: v\0c: d`))).toHaveLength(1);
    expect(parseTrailers(Buffer.from(`a: ${"v".repeat(513)}`))).toHaveLength(0);
    expect(parseTrailers(Buffer.from(Array.from({ length: 70 }, (_, i) => `k${i}: v`).join("\0")))).toHaveLength(64);
    expect(parseTrailers(Buffer.from(":novalue\0x: y"))).toHaveLength(1);
  });
});

describe("path helpers", () => {
  it("behave like Go's path.Clean, path.Dir and filepath.Join", () => {
    expect(cleanPath("")).toBe(".");
    expect(cleanPath("a//b/./c/..")).toBe("a/b");
    expect(cleanPath("../a")).toBe("../a");
    expect(cleanPath("a/../..")).toBe("..");
    expect(cleanPath("/../a/")).toBe("/a");
    expect(dirPath("README.md")).toBe(".");
    expect(dirPath("src/hello.txt")).toBe("src");
    expect(dirPath("a//b")).toBe("a");
    expect(dirPath("/")).toBe("/");
    expect(joinPath("", "x")).toBe("x");
    expect(joinPath("src/", "x")).toBe("src/x");
    expect(joinPath("", "")).toBe("");
  });
});

describe("reads through cat-file", () => {
  it("peels to commits and reports missing revisions as null", async () => {
    const reader = await cache.reader(repo.path);
    expect((await readCommit(reader, "refs/tags/v1.1.0"))?.id).toBe(repo.commits.merge);
    expect((await readCommit(reader, "main"))?.id).toBe(repo.commits.merge);
    expect(await readCommit(reader, "does-not-exist")).toBeNull();
    expect(await readCommit(reader, `${repo.commits.merge}^{tree}`)).toBeNull();
  });

  it("lists trees by revision and path, and never lets cat-file see a relative path", async () => {
    const reader = await cache.reader(repo.path);
    const root = await treeEntries(reader, "main", "");
    expect(root?.map((e) => text(e.path))).toEqual(
      git(repo.path, ["ls-tree", "--name-only", "main"]).trim().split("\n"),
    );
    expect((await treeEntries(reader, "main", "src"))?.map((e) => text(e.path))).toEqual(["src/hello.txt"]);
    expect(await treeEntries(reader, "main", "README.md")).toBeNull();
    expect(await treeEntries(reader, "main", "../x")).toBeNull();
    expect(await treeEntries(reader, "main", "./src")).toBeNull();
    // The process survived: the same cached reader still answers.
    const pid = cache.pid(repo.path);
    expect((await treeEntries(reader, "main", "src"))?.length).toBe(1);
    expect(cache.pid(repo.path)).toBe(pid);

    const finder = new TreeEntryFinder(reader);
    const hello = await finder.find("main", "src/hello.txt");
    expect(hello?.oid).toBe(git(repo.path, ["rev-parse", "main:src/hello.txt"]).trim());
    expect(hello?.type).toBe(TreeEntry_EntryType.BLOB);
    expect(hello?.mode).toBe(0o100644);
    expect(hello?.commitOid).toBe("main");
    expect(await finder.find("main", "src/missing.txt")).toBeNull();
    expect(await finder.find("no-such-rev", "README.md")).toBeNull();
  });
});
