import { spawnSync } from "node:child_process";
import { chmodSync, existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, describe, expect, test } from "vitest";
import {
  canTraverse,
  claimStateDir,
  createStateDirs,
  ensureSecret,
  lockStateDir,
  readRememberedPorts,
  rememberPorts,
  resetStateDir,
  STATE_MARKER,
  stateLayout,
} from "./state.js";

const work = mkdtempSync(join(tmpdir(), "gitaly-cluster-state-"));
afterAll(() => rmSync(work, { recursive: true, force: true }));
let n = 0;
const fresh = () => stateLayout(join(work, `s${++n}`));

describe("claimStateDir", () => {
  test("takes a missing or empty directory and marks it", () => {
    const layout = fresh();
    claimStateDir(layout);
    expect(existsSync(join(layout.root, STATE_MARKER))).toBe(true);
    claimStateDir(layout);
    const empty = fresh();
    mkdirSync(empty.root);
    claimStateDir(empty);
    expect(existsSync(empty.marker)).toBe(true);
  });

  test("creates missing parents with the usual mode and only the state dir private", () => {
    const layout = stateLayout(join(work, "parents", "deeper", "state"));
    claimStateDir(layout);
    expect(statSync(join(work, "parents", "deeper")).mode & 0o777).toBe(0o755 & ~process.umask());
    expect(statSync(layout.root).mode & 0o777).toBe(0o700);
  });

  test("refuses a non-empty directory it did not create", () => {
    const layout = fresh();
    mkdirSync(layout.root);
    writeFileSync(join(layout.root, "precious.txt"), "keep me");
    expect(() => claimStateDir(layout)).toThrow(/not empty and was not created by gitaly-cluster/);
    expect(readFileSync(join(layout.root, "precious.txt"), "utf8")).toBe("keep me");
  });
});

describe("lockStateDir", () => {
  test("one runner at a time; a dead runner's lock is taken over", () => {
    const layout = fresh();
    claimStateDir(layout);
    const lock = lockStateDir(layout);
    expect(readFileSync(layout.lockFile, "utf8").trim()).toBe(String(process.pid));
    // Our parent is alive: a lock held by it blocks us.
    lock.release();
    lockStateDir(layout, process.ppid);
    expect(() => lockStateDir(layout)).toThrow(new RegExp(`already running .*pid ${process.ppid}`));
    const dead = spawnSync("true").pid;
    writeFileSync(layout.lockFile, `${dead}\n`);
    const taken = lockStateDir(layout);
    expect(readFileSync(layout.lockFile, "utf8").trim()).toBe(String(process.pid));
    taken.release();
    expect(existsSync(layout.lockFile)).toBe(false);
  });
});

describe("secrets", () => {
  test("are generated once with mode 0600 and reused; a widened mode is put back", () => {
    const layout = fresh();
    claimStateDir(layout);
    createStateDirs(layout);
    expect(statSync(layout.secretsDir).mode & 0o777).toBe(0o700);
    const first = ensureSecret(layout.praefectTokenFile);
    expect(first).toMatch(/^[A-Za-z0-9_-]{43}$/);
    expect(statSync(layout.praefectTokenFile).mode & 0o777).toBe(0o600);
    chmodSync(layout.praefectTokenFile, 0o644);
    expect(ensureSecret(layout.praefectTokenFile)).toBe(first);
    expect(statSync(layout.praefectTokenFile).mode & 0o777).toBe(0o600);
    expect(ensureSecret(layout.gitalyTokenFile)).not.toBe(first);
  });
});

describe("resetStateDir", () => {
  test("empties the directory but keeps the marker and the lock", () => {
    const layout = fresh();
    claimStateDir(layout);
    const lock = lockStateDir(layout);
    createStateDirs(layout);
    ensureSecret(layout.gitalyTokenFile);
    writeFileSync(join(layout.gitalyDir, "x"), "");
    resetStateDir(layout);
    expect(existsSync(layout.marker)).toBe(true);
    expect(existsSync(layout.lockFile)).toBe(true);
    expect(existsSync(layout.secretsDir)).toBe(false);
    expect(existsSync(layout.gitalyDir)).toBe(false);
    lock.release();
  });
});

describe("ports.json", () => {
  test("round-trips and ignores junk", () => {
    const layout = fresh();
    claimStateDir(layout);
    expect(readRememberedPorts(layout)).toEqual({});
    rememberPorts(layout, { "gitaly-0.grpc": 20_001, postgres: 20_002 });
    expect(readRememberedPorts(layout)).toEqual({ "gitaly-0.grpc": 20_001, postgres: 20_002 });
    writeFileSync(layout.portsFile, '{"a": 70000, "b": "x", "c": 1}');
    expect(readRememberedPorts(layout)).toEqual({ c: 1 });
    writeFileSync(layout.portsFile, "not json");
    expect(readRememberedPorts(layout)).toEqual({});
  });
});

describe("canTraverse", () => {
  test("follows owner, group and other execute bits up to /", () => {
    const dir = join(work, "traverse", "a", "b");
    mkdirSync(dir, { recursive: true });
    const st = statSync(dir);
    const stranger = { name: "stranger", uid: st.uid + 12_345, gid: st.gid + 12_345 };
    chmodSync(join(work, "traverse"), 0o711);
    chmodSync(join(work, "traverse", "a"), 0o711);
    chmodSync(dir, 0o711);
    // `work` itself comes from mkdtemp: 0700.
    expect(canTraverse(stranger, dir)).toBe(false);
    chmodSync(work, 0o711);
    expect(canTraverse(stranger, dir)).toBe(true);
    chmodSync(join(work, "traverse", "a"), 0o700);
    expect(canTraverse(stranger, dir)).toBe(false);
    expect(canTraverse({ name: "owner", uid: st.uid, gid: st.gid }, dir)).toBe(true);
    chmodSync(join(work, "traverse", "a"), 0o710);
    expect(canTraverse({ ...stranger, gid: st.gid }, dir)).toBe(true);
    chmodSync(work, 0o700);
    expect(canTraverse(stranger, join(work, "missing"))).toBe(false);
  });
});
