import { mkdirSync, mkdtempSync, realpathSync, rmSync, statSync, symlinkSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createEmptyRepository } from "../../../test/harness/git-fixtures.js";
import { Code, RpcError } from "../../shared/grpc/errors.js";
import { StorageLocator } from "./locator.js";

let base: string;
let storage: string;
let outside: string;
let locator: StorageLocator;

function rpcError(fn: () => unknown): RpcError {
  try {
    fn();
  } catch (err) {
    if (err instanceof RpcError) return err;
    throw err;
  }
  throw new Error("expected an RpcError, nothing was thrown");
}

beforeAll(() => {
  base = realpathSync(mkdtempSync(join(tmpdir(), "locator-test-")));
  storage = join(base, "storage");
  outside = join(base, "outside");
  mkdirSync(storage);
  createEmptyRepository(join(storage, "group/project.git"));
  createEmptyRepository(join(outside, "victim.git"));
  // A directory inside the storage that is a symlink to a directory outside of it.
  symlinkSync(outside, join(storage, "evil"));
  // A dangling symlink: where it leads cannot be checked, so it is refused.
  symlinkSync(join(base, "does-not-exist"), join(storage, "dangling"));
  // Not a repository: only objects/.
  mkdirSync(join(storage, "broken.git/objects"), { recursive: true });
  writeFileSync(join(storage, "file.git"), "not a directory");
  locator = new StorageLocator([
    { name: "default", path: storage },
    { name: "gone", path: join(base, "missing-storage") },
  ]);
});

afterAll(() => {
  rmSync(base, { recursive: true, force: true });
});

describe("StorageLocator", () => {
  it("returns storage paths and refuses unknown or empty storage names", () => {
    expect(locator.storagePath("default")).toBe(storage);
    const unknown = rpcError(() => locator.storagePath("nope"));
    expect(unknown.code).toBe(Code.INVALID_ARGUMENT);
    expect(unknown.message).toBe("storage name not found");
    expect(unknown.metadata).toEqual({ storage_name: "nope" });
    expect(rpcError(() => locator.storagePath("")).message).toBe("storage name not set");
  });

  it("resolves an existing repository", () => {
    const repo = { storageName: "default", relativePath: "group/project.git" };
    expect(locator.repositoryPath(repo)).toBe(join(storage, "group/project.git"));
    // Cleaned like Go's filepath.Join.
    expect(locator.repositoryPath({ storageName: "default", relativePath: "group/../group/./project.git/" })).toBe(
      join(storage, "group/project.git"),
    );
  });

  it.each([
    [undefined, Code.INVALID_ARGUMENT, "repository not set"],
    [{ storageName: "", relativePath: "" }, Code.INVALID_ARGUMENT, "repository not set"],
    [{ storageName: "default", relativePath: "" }, Code.INVALID_ARGUMENT, "repository path not set"],
    [{ storageName: "", relativePath: "a.git" }, Code.INVALID_ARGUMENT, "storage name not set"],
    [{ storageName: "nope", relativePath: "a.git" }, Code.INVALID_ARGUMENT, "storage name not found"],
    [{ storageName: "gone", relativePath: "a.git" }, Code.NOT_FOUND, "storage does not exist"],
  ])("refuses %j with %i %s", (repo, code, message) => {
    const err = rpcError(() => locator.repositoryPath(repo));
    expect(err.code).toBe(code);
    expect(err.message).toBe(message);
  });

  it.each(["../outside/victim.git", "..", "group/../../outside/victim.git", "../storage-sibling", "a\0b"])(
    "refuses %j as escaping the storage, even when it need not exist",
    (relativePath) => {
      for (const mustExist of [true, false]) {
        const err = rpcError(() => locator.repositoryPath({ storageName: "default", relativePath }, { mustExist }));
        expect(err.code).toBe(Code.INVALID_ARGUMENT);
        expect(err.message).toBe("relative path escapes root directory");
        expect(err.metadata.relative_path).toBe(relativePath);
      }
    },
  );

  it("joins an absolute relative path under the storage, as upstream does, never outside it", () => {
    const path = locator.repositoryPath(
      { storageName: "default", relativePath: join(outside, "victim.git") },
      { mustExist: false },
    );
    expect(path).toBe(join(storage, outside, "victim.git"));
    const err = rpcError(() =>
      locator.repositoryPath({ storageName: "default", relativePath: join(outside, "victim.git") }),
    );
    expect(err.code).toBe(Code.NOT_FOUND);
  });

  it("refuses paths that leave the storage through a symlink", () => {
    // The target is a valid repository: without the realpath check it would be served.
    for (const relativePath of ["evil/victim.git", "evil/new.git", "evil", "dangling", "dangling/x.git"]) {
      for (const mustExist of [true, false]) {
        const err = rpcError(() => locator.repositoryPath({ storageName: "default", relativePath }, { mustExist }));
        expect(err.code, relativePath).toBe(Code.INVALID_ARGUMENT);
        expect(err.message).toBe("relative path escapes root directory");
      }
    }
  });

  it("allows a symlink that stays inside the storage", () => {
    symlinkSync(join(storage, "group"), join(storage, "alias"));
    expect(locator.repositoryPath({ storageName: "default", relativePath: "alias/project.git" })).toBe(
      join(storage, "alias/project.git"),
    );
  });

  it("reports a missing repository as NotFound with its storage and path", () => {
    const err = rpcError(() => locator.repositoryPath({ storageName: "default", relativePath: "no/such.git" }));
    expect(err.code).toBe(Code.NOT_FOUND);
    expect(err.message).toBe("repository not found");
    expect(err.metadata).toEqual({ storage_name: "default", relative_path: "no/such.git" });
    // Creating RPCs skip the existence check.
    expect(locator.repositoryPath({ storageName: "default", relativePath: "no/such.git" }, { mustExist: false })).toBe(
      join(storage, "no/such.git"),
    );
  });

  it("reports a directory that is not a git directory as FailedPrecondition", () => {
    const err = rpcError(() => locator.repositoryPath({ storageName: "default", relativePath: "broken.git" }));
    expect(err.code).toBe(Code.FAILED_PRECONDITION);
    expect(err.message).toBe('repository not valid: "refs" does not exist');
    const file = rpcError(() => locator.repositoryPath({ storageName: "default", relativePath: "file.git" }));
    expect(file.code).toBe(Code.UNKNOWN);
  });

  it("creates temporary directories under +gitaly/tmp", async () => {
    const a = await locator.tempDir("default");
    const b = await locator.tempDir("default", "quarantine-");
    expect(a).not.toBe(b);
    for (const dir of [a, b]) {
      expect(dir.startsWith(join(storage, "+gitaly/tmp/"))).toBe(true);
      expect(statSync(dir).isDirectory()).toBe(true);
    }
    // Repositories built there are addressable, as upstream's temporary repositories are.
    const rel = a.slice(storage.length + 1);
    expect(locator.repositoryPath({ storageName: "default", relativePath: rel }, { mustExist: false })).toBe(a);
    const err = rpcError(() => locator.tempRoot("nope"));
    expect(err.code).toBe(Code.INVALID_ARGUMENT);
    expect(err.message).toBe('tmp dir: no such storage: "nope"');
  });
});
