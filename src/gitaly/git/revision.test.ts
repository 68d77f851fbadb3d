import { describe, expect, it } from "vitest";
import { Code, RpcError } from "../../shared/grpc/errors.js";
import {
  type RevisionOptions,
  referenceNameError,
  revisionError,
  validateReferenceName,
  validateRevision,
} from "./revision.js";

describe("revisionError", () => {
  const pseudo: RevisionOptions = { allowPseudoRevisions: true };
  const pathScoped: RevisionOptions = { allowPathScopedRevisions: true };
  it.each<[string | Uint8Array, RevisionOptions, string | null]>([
    ["refs/heads/main", {}, null],
    ["HEAD~3^2", {}, null],
    ["a".repeat(40), {}, null],
    ["", {}, "empty revision"],
    ["", { allowEmpty: true }, null],
    ["--upload-pack=x", {}, "revision can't start with '-'"],
    ["--upload-pack=x", pseudo, "revision can't start with '-'"],
    ["-ofoo", {}, "revision can't start with '-'"],
    ["--output=/tmp/x", pseudo, "revision can't start with '-'"],
    ["foo bar", {}, "revision can't contain whitespace"],
    ["foo\tbar", {}, "revision can't contain whitespace"],
    ["foo\nbar", {}, "revision can't contain whitespace"],
    ["foo\rbar", {}, "revision can't contain whitespace"],
    ["a\0b", {}, "revision can't contain NUL"],
    ["a\0b", pathScoped, "revision can't contain NUL"],
    ["HEAD:path", {}, "revision can't contain ':'"],
    ["HEAD:path", pathScoped, null],
    ["HEAD:dir/with space\nand newline", pathScoped, null],
    ["HEA D:path", pathScoped, "revision can't contain whitespace"],
    [":path", pathScoped, "empty revision"],
    ["a\\b", {}, "revision can't contain '\\'"],
    ["--all", {}, "revision can't start with '-'"],
    ["--all", pseudo, null],
    ["--not", pseudo, null],
    ["--branches", pseudo, null],
    ["--branches=feature/*", pseudo, null],
    ["--tags=v1*", pseudo, null],
    ["--glob=refs/heads/*", pseudo, null],
    ["--alternate-refs", pseudo, null],
    ["--remotes", pseudo, "revision can't start with '-'"],
    [Buffer.from([0x72, 0xff, 0xfe]), {}, null],
    [Buffer.from([0x72, 0x00]), {}, "revision can't contain NUL"],
  ])("%j with %j → %s", (revision, opts, expected) => {
    expect(revisionError(revision, opts)).toBe(expected);
  });

  it("throws InvalidArgument, optionally with a context prefix", () => {
    let err: unknown;
    try {
      validateRevision("-x", { context: "invalid revision" });
    } catch (e) {
      err = e;
    }
    expect(err).toBeInstanceOf(RpcError);
    expect((err as RpcError).code).toBe(Code.INVALID_ARGUMENT);
    expect((err as RpcError).message).toBe("invalid revision: revision can't start with '-'");
    expect(() => validateRevision("main")).not.toThrow();
  });
});

describe("referenceNameError", () => {
  it.each<[string, string | null]>([
    ["refs/heads/main", null],
    ["refs/heads/feature/x-1", null],
    ["refs/merge-requests/1/head", null],
    ["HEAD", "HEAD reference not allowed"],
    ["main", "reference is not fully qualified"],
    ["refs/", "refs/ is not a valid reference"],
    ["refs/heads/", "reference must not end with slash"],
    ["refs/heads/x.", "reference must not end with dot"],
    ["refs/heads/a@{1}", "reference must not contain @{"],
    ["refs/heads/a..b", "reference must not contain double dots"],
    ["refs/heads/a b", "reference must not contain space characters"],
    ["refs/heads/a:b", "reference must not contain special characters"],
    ["refs/heads/a~1", "reference must not contain special characters"],
    ["refs/heads/a*", "reference must not contain special characters"],
    ["refs/heads/a\x7f", "reference must not contain special characters"],
    ["refs/heads/a\x01", "reference must not contain control characters"],
    ["refs/heads//a", "empty component is not allowed"],
    ["refs/heads/.hidden", "component must not start with dot"],
    ["refs/heads/x.lock", "component must not end with .lock"],
    ["refs/heads/x.lock/y", "component must not end with .lock"],
  ])("%j → %s", (name, expected) => {
    expect(referenceNameError(name)).toBe(expected);
  });

  it("accepts HEAD only when asked to", () => {
    expect(referenceNameError("HEAD", { allowHead: true })).toBeNull();
    expect(() => validateReferenceName("HEAD")).toThrow("HEAD reference not allowed");
    expect(() => validateReferenceName("HEAD", { allowHead: true })).not.toThrow();
  });
});
