import { mkdirSync, mkdtempSync, renameSync, rmSync, symlinkSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { watchFiles } from "./file-watch.js";
import { waitFor } from "./net.js";

const dir = mkdtempSync(join(tmpdir(), "file-watch-"));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

describe("watchFiles", () => {
  it("fires on a content change, not on the initial read", async () => {
    const file = join(dir, "token");
    writeFileSync(file, "one");
    const seen: string[][] = [];
    const w = watchFiles([file], (changed) => void seen.push(changed), { intervalMs: 50 });
    try {
      await w.check();
      expect(seen).toEqual([]);
      writeFileSync(file, "two");
      await waitFor("change event", async () => seen.length === 1);
      expect(seen[0]).toEqual([file]);
      // Same content again is not a change.
      writeFileSync(file, "two");
      await w.check();
      expect(seen).toHaveLength(1);
    } finally {
      w.close();
    }
  });

  it("sees a Kubernetes-style symlink swap", async () => {
    // Secrets are mounted as name -> ..data/name with ..data -> ..<timestamp>.
    const mount = join(dir, "mount");
    const v1 = join(mount, "..v1");
    const v2 = join(mount, "..v2");
    for (const [d, content] of [
      [v1, "old-token"],
      [v2, "new-token"],
    ] as const) {
      mkdirSync(d, { recursive: true });
      writeFileSync(join(d, "token"), content);
    }
    symlinkSync("..v1", join(mount, "..data"));
    symlinkSync("..data/token", join(mount, "token"));
    const seen: string[] = [];
    const w = watchFiles([join(mount, "token")], (c) => void seen.push(...c), { intervalMs: 50 });
    try {
      await w.check();
      symlinkSync("..v2", join(mount, "..data_tmp"));
      renameSync(join(mount, "..data_tmp"), join(mount, "..data"));
      await waitFor("swap detected", async () => seen.length === 1);
    } finally {
      w.close();
    }
  });
});
