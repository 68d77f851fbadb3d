import { mkdtempSync, realpathSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Readable } from "node:stream";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createManyRefsRepository, createStandardRepository, git } from "../../../../test/harness/git-fixtures.js";
import { GitCommandError, GitCommandFactory } from "../command.js";
import { gitRecords, splitRecords } from "./records.js";

let base: string;
let repoPath: string;
let largeRepo: string;
const factory = new GitCommandFactory();

beforeAll(() => {
  base = realpathSync(mkdtempSync(join(tmpdir(), "records-test-")));
  repoPath = createManyRefsRepository(join(base, "many.git"), 300).path;
  largeRepo = createStandardRepository(join(base, "standard.git")).path;
});

afterAll(() => {
  rmSync(base, { recursive: true, force: true });
});

async function collect(it: AsyncIterable<Buffer>): Promise<string[]> {
  const out: string[] = [];
  for await (const r of it) out.push(r.toString());
  return out;
}

describe("splitRecords", () => {
  it("splits across chunk boundaries and keeps a final unterminated record", async () => {
    const stream = Readable.from([Buffer.from("ab"), Buffer.from("c\nde"), Buffer.from("\n\nf")]);
    expect(await collect(splitRecords(stream))).toEqual(["abc", "de", "", "f"]);
    const nul = Readable.from([Buffer.from("x\0y\0")]);
    expect(await collect(splitRecords(nul, 0))).toEqual(["x", "y"]);
  });
});

describe("gitRecords", () => {
  it("yields git's output lines", async () => {
    const proc = factory.spawn({ repoPath, subcommand: "for-each-ref", flags: ["--format=%(refname)"] });
    const lines = await collect(gitRecords(proc));
    expect(lines).toEqual(git(repoPath, ["for-each-ref", "--format=%(refname)"]).trim().split("\n"));
  });

  it("throws git's failure after the output", async () => {
    const proc = factory.spawn({ repoPath, subcommand: "rev-list", args: ["no-such-revision"] });
    await expect(collect(gitRecords(proc))).rejects.toBeInstanceOf(GitCommandError);
  });

  it("stops git when the consumer stops early", async () => {
    // 10.5 MiB of output: far more than a pipe holds, so git is still writing.
    const proc = factory.spawn({ repoPath: largeRepo, subcommand: "cat-file", args: ["blob", "large-file:large.bin"] });
    let n = 0;
    for await (const _ of gitRecords(proc)) {
      if (++n === 3) break;
    }
    // Killed rather than finished: wait() reports it, and does settle.
    await expect(proc.wait()).rejects.toBeInstanceOf(GitCommandError);
  });
});
