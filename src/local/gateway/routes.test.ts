import { describe, expect, it } from "vitest";
import { parseGitRoute, relativePathFor } from "./routes.js";

describe("parseGitRoute", () => {
  it.each([
    [
      "GET",
      "/group/project.git/info/refs?service=git-upload-pack",
      { kind: "info-refs", service: "git-upload-pack", relativePath: "group/project.git" },
    ],
    [
      "GET",
      "/a/b/c.git/info/refs?service=git-receive-pack",
      { kind: "info-refs", service: "git-receive-pack", relativePath: "a/b/c.git" },
    ],
    ["POST", "/group/project.git/git-upload-pack", { kind: "upload-pack", relativePath: "group/project.git" }],
    ["POST", "/group/project.git/git-receive-pack", { kind: "receive-pack", relativePath: "group/project.git" }],
    ["POST", "/group/project/git-upload-pack", { kind: "upload-pack", relativePath: "group/project.git" }],
    ["POST", "/group/my%20project.git/git-upload-pack", { kind: "upload-pack", relativePath: "group/my project.git" }],
    [
      "GET",
      "/group/project.git/info/refs?foo=1&service=git-upload-pack",
      { kind: "info-refs", service: "git-upload-pack", relativePath: "group/project.git" },
    ],
  ])("%s %s", (method, url, want) => {
    expect(parseGitRoute(method, url)).toEqual(want);
  });

  it.each([
    ["GET", "/group/project.git/info/refs", 403],
    ["GET", "/group/project.git/info/refs?service=git-upload-archive", 403],
    ["GET", "/group/project.git/HEAD", 404],
    ["GET", "/", 404],
    ["GET", "/group/project.git/git-upload-pack", 405],
    ["POST", "/group/project.git/info/refs?service=git-upload-pack", 405],
    ["GET", "/info/refs?service=git-upload-pack", 400],
    ["GET", "/.git/info/refs?service=git-upload-pack", 400],
    ["GET", "/group%2F..%2Fx.git/info/refs?service=git-upload-pack", 400],
    ["GET", "/%2Fetc.git/info/refs?service=git-upload-pack", 400],
    ["GET", "/a%00b.git/info/refs?service=git-upload-pack", 400],
    ["GET", "/a%zz.git/info/refs?service=git-upload-pack", 400],
  ])("%s %s → %i", (method, url, status) => {
    const route = parseGitRoute(method, url);
    expect(route).toMatchObject({ kind: "error", status });
  });
});

describe("relativePathFor", () => {
  it("keeps a .git suffix and adds a missing one", () => {
    expect(relativePathFor("/g/p.git")).toEqual({ relativePath: "g/p.git" });
    expect(relativePathFor("/g/p")).toEqual({ relativePath: "g/p.git" });
    expect(relativePathFor("/g/p.git/")).toEqual({ relativePath: "g/p.git" });
  });

  it("refuses traversal and empty segments", () => {
    expect(relativePathFor("/g/../p.git")).toHaveProperty("error");
    expect(relativePathFor("/g//p.git")).toHaveProperty("error");
    expect(relativePathFor("/./p.git")).toHaveProperty("error");
  });
});
