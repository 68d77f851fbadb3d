import { chmod, mkdir, mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, test } from "vitest";
import { formatIssue } from "../../shared/config/issues.js";
import { createCertificateAuthority, issueCertificate } from "../../shared/tls/certificates.js";
import { checkGitalyEnvironment, readAuthToken, readGitlabSecret } from "./environment.js";
import { loadGitalyConfig } from "./load.js";
import type { GitalyConfig } from "./schema.js";

let dir: string;
let storageA: string;
let storageB: string;
let certPath: string;
let keyPath: string;
let otherKeyPath: string;
let tokenFile: string;
let secretFile: string;

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), "gitaly-config-env-"));
  storageA = join(dir, "storage-a");
  storageB = join(dir, "storage-b");
  await mkdir(storageA);
  await mkdir(storageB);

  const ca = await createCertificateAuthority("config-test-ca");
  const leaf = await issueCertificate(ca, { commonName: "gitaly", hosts: ["127.0.0.1"] });
  const other = await issueCertificate(ca, { commonName: "other" });
  certPath = join(dir, "cert.pem");
  keyPath = join(dir, "key.pem");
  otherKeyPath = join(dir, "other-key.pem");
  await writeFile(certPath, leaf.certificate);
  await writeFile(keyPath, leaf.privateKey);
  await writeFile(otherKeyPath, other.privateKey);

  tokenFile = join(dir, "token");
  await writeFile(tokenFile, "  file-token\n", { mode: 0o600 });
  await chmod(tokenFile, 0o600);
  secretFile = join(dir, "gitlab-secret");
  await writeFile(secretFile, "shell-secret\n");
});

afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
});

function load(top: string, tables = ""): GitalyConfig {
  const text = `listen_addr = "127.0.0.1:0"\n${top}\n[[storage]]\nname = "a"\npath = "${storageA}"\n[[storage]]\nname = "b"\npath = "${storageB}"\n${tables}\n`;
  return loadGitalyConfig(text).config;
}

async function problems(cfg: GitalyConfig): Promise<string[]> {
  return (await checkGitalyEnvironment(cfg)).map(formatIssue);
}

describe("checkGitalyEnvironment", () => {
  test("passes a configuration whose files and directories are all in order", async () => {
    const cfg = load(
      `bin_dir = "${dir}"\nruntime_dir = "${join(dir, "run", "gitaly")}"\ntls_listen_addr = "127.0.0.1:0"`,
      `[auth]\ntoken_file = "${tokenFile}"\n[tls]\ncertificate_path = "${certPath}"\nkey_path = "${keyPath}"\n` +
        `[gitlab]\nurl = "http://127.0.0.1:1"\nsecret_file = "${secretFile}"\n[gitlab-shell]\ndir = "${dir}"`,
    );
    expect(await problems(cfg)).toEqual([]);
  });

  test("reports a missing storage directory and a storage path that is a file", async () => {
    const missing = join(dir, "nope");
    const file = join(dir, "a-file");
    await writeFile(file, "x");
    const text = `socket_path = "/tmp/x.sock"\n[[storage]]\nname = "a"\npath = "${missing}"\n[[storage]]\nname = "b"\npath = "${file}"\n`;
    expect(await problems(loadGitalyConfig(text).config)).toEqual([
      `storage[0].path: doesn't exist: "${missing}"`,
      `storage[1].path: not a dir: "${file}"`,
    ]);
  });

  test("reports a missing bin_dir and a runtime_dir that cannot be created", async () => {
    const file = join(dir, "blocker");
    await writeFile(file, "x");
    const cfg = load(`bin_dir = "${join(dir, "no-bin")}"\nruntime_dir = "${join(file, "run")}"`);
    expect(await problems(cfg)).toEqual([
      `bin_dir: doesn't exist: "${join(dir, "no-bin")}"`,
      `runtime_dir: cannot be created: "${file}" is not a directory`,
    ]);
  });

  test("reports a missing or too permissive token file, and accepts 0400", async () => {
    const missing = join(dir, "no-token");
    expect(await problems(load("", `[auth]\ntoken_file = "${missing}"`))).toEqual([
      `auth.token_file: doesn't exist: "${missing}"`,
    ]);

    const open = join(dir, "open-token");
    await writeFile(open, "t");
    await chmod(open, 0o644);
    expect(await problems(load("", `[auth]\ntoken_file = "${open}"`))).toEqual([
      "auth.token_file: file permission 0644 is too permissive, should be 0600 or 0400 (0440 or 0640 under a pod's fsGroup)",
    ]);

    const readOnly = join(dir, "ro-token");
    await writeFile(readOnly, "t");
    await chmod(readOnly, 0o400);
    expect(await problems(load("", `[auth]\ntoken_file = "${readOnly}"`))).toEqual([]);

    // What a Kubernetes Secret volume under fsGroup looks like.
    await chmod(readOnly, 0o440);
    expect(await problems(load("", `[auth]\ntoken_file = "${readOnly}"`))).toEqual([]);
    await chmod(readOnly, 0o444);
    expect(await problems(load("", `[auth]\ntoken_file = "${readOnly}"`))).toHaveLength(1);
  });

  test("reports missing, unparsable, switched and mismatched TLS files", async () => {
    const tls = (cert: string, key: string) => load("", `[tls]\ncertificate_path = "${cert}"\nkey_path = "${key}"`);
    const missing = join(dir, "missing.pem");
    expect(await problems(tls(missing, keyPath))).toEqual([`tls.certificate_path: doesn't exist: "${missing}"`]);
    expect(await problems(tls(certPath, missing))).toEqual([`tls.key_path: doesn't exist: "${missing}"`]);

    const garbage = join(dir, "garbage.pem");
    await writeFile(garbage, "not pem at all");
    expect(await problems(tls(garbage, keyPath))).toEqual([
      "tls.certificate_path: loading x509 keypair: tls: failed to find any PEM data in certificate input",
    ]);
    expect(await problems(tls(certPath, garbage))).toEqual([
      "tls.key_path: loading x509 keypair: tls: failed to find any PEM data in key input",
    ]);
    expect(await problems(tls(keyPath, certPath))).toEqual([
      "tls.certificate_path: loading x509 keypair: tls: failed to find certificate PEM data in certificate input, but did find a private key; PEM inputs may have been switched",
    ]);
    expect(await problems(tls(certPath, otherKeyPath))).toEqual([
      "tls.key_path: loading x509 keypair: tls: private key does not match public key",
    ]);
  });

  test("requires a GitLab secret only when gitlab.url is set", async () => {
    expect(await problems(load("", '[gitlab]\nurl = "http://gitlab"'))).toEqual([
      "gitlab.secret_file: not set (gitlab.url needs secret or secret_file)",
    ]);
    const missing = join(dir, "no-secret");
    expect(await problems(load("", `[gitlab]\nurl = "http://gitlab"\nsecret_file = "${missing}"`))).toEqual([
      `gitlab.secret_file: doesn't exist: "${missing}"`,
    ]);
    expect(await problems(load("", '[gitlab]\nurl = "http://gitlab"\nsecret = "s"'))).toEqual([]);
    expect(await problems(load("", `[gitlab-shell]\ndir = "${dir}"`))).toEqual([]);
  });

  test("checks GitLab CA settings and the gitlab-shell dir when set", async () => {
    const missing = join(dir, "none");
    const cfg = load(
      "",
      `[gitlab.http-settings]\nca_file = "${missing}"\nca_path = "${certPath}"\n[gitlab-shell]\ndir = "${missing}"`,
    );
    expect(await problems(cfg)).toEqual([
      `gitlab.http-settings.ca_file: doesn't exist: "${missing}"`,
      `gitlab.http-settings.ca_path: not a dir: "${certPath}"`,
      `gitlab-shell.dir: doesn't exist: "${missing}"`,
    ]);
  });
});

describe("readAuthToken", () => {
  test("returns the inline token, the trimmed token file, or nothing", async () => {
    expect(await readAuthToken(load("", '[auth]\ntoken = "inline"'))).toBe("inline");
    expect(await readAuthToken(load("", `[auth]\ntoken_file = "${tokenFile}"`))).toBe("file-token");
    expect(await readAuthToken(load(""))).toBe("");
  });

  test("fails when the token file cannot be read", async () => {
    const missing = join(dir, "gone");
    await expect(readAuthToken(load("", `[auth]\ntoken_file = "${missing}"`))).rejects.toThrow(
      `reading token file "${missing}"`,
    );
  });
});

describe("readGitlabSecret", () => {
  test("returns the inline secret or the trimmed secret file", async () => {
    expect(await readGitlabSecret(load("", '[gitlab]\nsecret = " s \\n"'))).toBe("s");
    expect(await readGitlabSecret(load("", `[gitlab]\nsecret_file = "${secretFile}"`))).toBe("shell-secret");
    await expect(readGitlabSecret(load(""))).rejects.toThrow("GitLab secret not configured");
  });
});
