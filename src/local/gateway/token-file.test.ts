import { mkdtempSync, renameSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { TokenFile } from "./token-file.js";

describe("TokenFile", () => {
  const dir = mkdtempSync(join(tmpdir(), "token-file-"));
  afterAll(() => rmSync(dir, { recursive: true, force: true }));

  it("reads the token without surrounding whitespace and follows a rotation by rename", async () => {
    const path = join(dir, "token");
    writeFileSync(path, "first\n");
    const file = new TokenFile(path);
    expect(await file.token()).toBe("first");
    writeFileSync(`${path}.new`, "  second\n");
    renameSync(`${path}.new`, path);
    expect(await file.token()).toBe("second");
  });

  it("follows an in-place rewrite of a different size", async () => {
    const path = join(dir, "token-inplace");
    writeFileSync(path, "a");
    const file = new TokenFile(path);
    expect(await file.token()).toBe("a");
    writeFileSync(path, "bbbb");
    expect(await file.token()).toBe("bbbb");
  });

  it("names the file when it cannot be read", async () => {
    const path = join(dir, "missing");
    await expect(new TokenFile(path).token()).rejects.toThrow(path);
  });
});
