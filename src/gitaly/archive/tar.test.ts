import {
  chmodSync,
  existsSync,
  mkdirSync,
  mkdtempSync,
  readFileSync,
  rmSync,
  statSync,
  symlinkSync,
  writeFileSync,
} from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { Readable } from "node:stream";
import tar from "tar-stream";
import { afterAll, describe, expect, it } from "vitest";
import { collectEntries, extractTar, packEntries } from "./tar.js";

const dir = mkdtempSync(join(tmpdir(), "tar-test-"));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

function archive(
  entries: { name: string; data?: string; type?: "file" | "symlink" | "directory"; linkname?: string }[],
) {
  const pack = tar.pack();
  for (const e of entries) {
    if (e.type === "symlink") pack.entry({ name: e.name, type: "symlink", linkname: e.linkname ?? "" });
    else if (e.type === "directory") pack.entry({ name: e.name, type: "directory" });
    else pack.entry({ name: e.name, mode: 0o644 }, e.data ?? "");
  }
  pack.finalize();
  return pack as unknown as Readable;
}

describe("tar archives", () => {
  it("round-trips a directory with modes, skipping symlinks", async () => {
    const src = join(dir, "src");
    mkdirSync(join(src, "custom_hooks", "pre-receive.d"), { recursive: true });
    writeFileSync(join(src, "custom_hooks", "pre-receive"), "#!/bin/sh\nexit 0\n");
    chmodSync(join(src, "custom_hooks", "pre-receive"), 0o755);
    writeFileSync(join(src, "custom_hooks", "pre-receive.d", "a"), "a");
    symlinkSync("/etc/passwd", join(src, "custom_hooks", "link"));
    const entries = await collectEntries(src, { filter: (p) => p === "custom_hooks" || p.startsWith("custom_hooks/") });
    expect(entries.map((e) => e.name)).toEqual([
      "custom_hooks/",
      "custom_hooks/pre-receive",
      "custom_hooks/pre-receive.d/",
      "custom_hooks/pre-receive.d/a",
    ]);
    const out = join(dir, "out");
    mkdirSync(out);
    await extractTar(packEntries(entries), out, { only: "custom_hooks" });
    expect(readFileSync(join(out, "custom_hooks", "pre-receive"), "utf8")).toBe("#!/bin/sh\nexit 0\n");
    expect(statSync(join(out, "custom_hooks", "pre-receive")).mode & 0o777).toBe(0o755);
    expect(existsSync(join(out, "custom_hooks", "link"))).toBe(false);
  });

  it("refuses entries that escape the target", async () => {
    const out = join(dir, "escape");
    mkdirSync(out);
    await expect(extractTar(archive([{ name: "../evil", data: "x" }]), out)).rejects.toThrow(/invalid file path/);
    await expect(extractTar(archive([{ name: "/abs", data: "x" }]), out)).rejects.toThrow(/invalid file path/);
    await expect(extractTar(archive([{ name: "a/../../evil", data: "x" }]), out)).rejects.toThrow(/invalid file path/);
    expect(existsSync(join(dir, "evil"))).toBe(false);
  });

  it("refuses links", async () => {
    const out = join(dir, "links");
    mkdirSync(out);
    await expect(extractTar(archive([{ name: "l", type: "symlink", linkname: "/etc" }]), out)).rejects.toThrow(
      /unsupported tar entry type symlink/,
    );
  });

  it("extracts only the requested prefix and can strip it", async () => {
    const out = join(dir, "strip");
    mkdirSync(out);
    const n = await extractTar(
      archive([
        { name: "custom_hooks/", type: "directory" },
        { name: "custom_hooks/update", data: "u" },
        { name: "other/file", data: "o" },
      ]),
      out,
      { only: "custom_hooks", stripPrefix: true },
    );
    expect(n).toBe(1);
    expect(readFileSync(join(out, "update"), "utf8")).toBe("u");
    expect(existsSync(join(out, "other"))).toBe(false);
  });
});
