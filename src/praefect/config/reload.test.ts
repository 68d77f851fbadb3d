import { chmod, mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, test } from "vitest";
import { ConfigError, loadPraefectConfig, loadPraefectConfigFile } from "./load.js";
import { parseNodeToken, readNodeTokenFile } from "./node-token.js";
import {
  nodeTokensOf,
  nodeTopologyChanges,
  reloadWatchedFiles,
  servingKeyPairFiles,
  tlsListenerChanges,
  withNodeTokens,
} from "./reload.js";

type Node = { storage: string; address: string; token?: string; token_file?: string };

function configWith(virtualStorages: Record<string, Node[]>, extra = "") {
  const toml = Object.entries(virtualStorages)
    .map(
      ([name, nodes]) =>
        `[[virtual_storage]]\nname = "${name}"\n${nodes
          .map(
            (n) =>
              `[[virtual_storage.node]]\nstorage = "${n.storage}"\naddress = "${n.address}"\n` +
              (n.token !== undefined ? `token = "${n.token}"\n` : "") +
              (n.token_file !== undefined ? `token_file = "${n.token_file}"\n` : ""),
          )
          .join("")}`,
    )
    .join("");
  return loadPraefectConfig(`listen_addr = "127.0.0.1:2305"\n${extra}\n${toml}`).config;
}

const bytes = (s: string) => new TextEncoder().encode(s);

describe("parseNodeToken", () => {
  test("returns the trimmed token", () => {
    expect(parseNodeToken(bytes("  s3cr3t-token \n"))).toBe("s3cr3t-token");
    expect(parseNodeToken(bytes("with inner space"))).toBe("with inner space");
  });

  test("refuses an empty file, control characters and invalid UTF-8, without echoing the content", () => {
    expect(() => parseNodeToken(bytes(""))).toThrow("the file is empty");
    expect(() => parseNodeToken(bytes(" \n\t "))).toThrow("the file is empty");
    expect(() => parseNodeToken(bytes("abc\u0000def"))).toThrow("control characters");
    expect(() => parseNodeToken(bytes("two\nlines"))).toThrow("control characters");
    expect(() => parseNodeToken(bytes("del\u007f"))).toThrow("control characters");
    expect(() => parseNodeToken(Uint8Array.from([0x74, 0xff, 0xfe, 0x74]))).toThrow("not valid UTF-8");
    try {
      parseNodeToken(bytes("secret\u0001value"));
      expect.unreachable();
    } catch (err) {
      expect((err as Error).message).not.toContain("secret");
    }
  });
});

describe("node token files on disk", () => {
  let dir: string;
  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), "praefect-node-token-"));
  });
  afterAll(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  test("readNodeTokenFile names the file and the problem", async () => {
    const good = join(dir, "good");
    await writeFile(good, "token-a\n", { mode: 0o600 });
    expect(await readNodeTokenFile(good)).toBe("token-a");
    const empty = join(dir, "empty");
    await writeFile(empty, "", { mode: 0o600 });
    await expect(readNodeTokenFile(empty)).rejects.toThrow(`token file "${empty}" holds no token: the file is empty`);
    await expect(readNodeTokenFile(join(dir, "missing"))).rejects.toThrow(
      `reading token file "${join(dir, "missing")}"`,
    );
  });

  test("loading a config with a garbage node token file fails with the node's key", async () => {
    const tokenFile = join(dir, "garbage");
    await writeFile(tokenFile, Buffer.from([0x00, 0x01, 0x02, 0xff]));
    await chmod(tokenFile, 0o600);
    const configPath = join(dir, "config.toml");
    await writeFile(
      configPath,
      `listen_addr = "127.0.0.1:2305"\n[[virtual_storage]]\nname = "default"\n[[virtual_storage.node]]\nstorage = "gitaly-1"\naddress = "tcp://127.0.0.1:1"\ntoken_file = "${tokenFile}"\n`,
    );
    const error = await loadPraefectConfigFile(configPath).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(ConfigError);
    expect((error as ConfigError).errors.map((e) => e.key)).toEqual(["virtual_storage[0].node[0].token_file"]);
    await writeFile(tokenFile, "token-b\n");
    const { config } = await loadPraefectConfigFile(configPath);
    expect(nodeTokensOf(config)).toEqual([
      { virtualStorage: "default", storage: "gitaly-1", address: "tcp://127.0.0.1:1", token: "token-b" },
    ]);
  });
});

describe("nodeTopologyChanges", () => {
  const running = configWith({
    default: [
      { storage: "gitaly-1", address: "tcp://10.0.0.1:8075", token: "a" },
      { storage: "gitaly-2", address: "tcp://10.0.0.2:8075", token: "b" },
    ],
    other: [{ storage: "gitaly-9", address: "tcp://10.0.0.9:8075" }],
  });

  test("token changes alone are no topology change", () => {
    const fresh = configWith({
      default: [
        { storage: "gitaly-1", address: "tcp://10.0.0.1:8075", token: "new-a" },
        { storage: "gitaly-2", address: "tcp://10.0.0.2:8075", token_file: "/run/b" },
      ],
      other: [{ storage: "gitaly-9", address: "tcp://10.0.0.9:8075", token: "x" }],
    });
    expect(nodeTopologyChanges(running, fresh)).toEqual([]);
  });

  test("names added and removed nodes and virtual storages, and changed addresses", () => {
    const fresh = configWith({
      default: [
        { storage: "gitaly-1", address: "tcp://10.0.0.11:8075" },
        { storage: "gitaly-3", address: "tcp://10.0.0.3:8075" },
      ],
      third: [{ storage: "gitaly-7", address: "tcp://10.0.0.7:8075" }],
    });
    expect(nodeTopologyChanges(running, fresh)).toEqual([
      'node "default/gitaly-1" address changed from "tcp://10.0.0.1:8075" to "tcp://10.0.0.11:8075"',
      'node "default/gitaly-2" removed',
      'node "default/gitaly-3" added',
      'virtual storage "other" removed',
      'virtual storage "third" added',
    ]);
  });
});

describe("reloadWatchedFiles", () => {
  test("the config file, [auth] token_file and each node token_file, once each", () => {
    const config = configWith(
      {
        default: [
          { storage: "gitaly-1", address: "tcp://10.0.0.1:8075", token_file: "/run/node-token" },
          { storage: "gitaly-2", address: "tcp://10.0.0.2:8075", token_file: "/run/node-token" },
          { storage: "gitaly-3", address: "tcp://10.0.0.3:8075", token: "inline" },
        ],
        other: [{ storage: "gitaly-9", address: "tcp://10.0.0.9:8075", token_file: "/run/other-token" }],
      },
      '[auth]\ntoken_file = "/run/praefect-token"\n',
    );
    expect(reloadWatchedFiles("/etc/praefect/config.toml", config)).toEqual([
      "/etc/praefect/config.toml",
      "/run/praefect-token",
      "/run/node-token",
      "/run/other-token",
    ]);
    expect(reloadWatchedFiles("/c.toml", configWith({ default: [{ storage: "g", address: "tcp://h:1" }] }))).toEqual([
      "/c.toml",
    ]);
  });

  test("with the serving key pair after the token files", () => {
    const config = configWith(
      { default: [{ storage: "g", address: "tcp://h:1", token_file: "/run/node-token" }] },
      'tls_listen_addr = "127.0.0.1:3305"\n[tls]\ncertificate_path = "/tls/tls.crt"\nkey_path = "/tls/tls.key"\n',
    );
    expect(reloadWatchedFiles("/c.toml", config, servingKeyPairFiles(config))).toEqual([
      "/c.toml",
      "/run/node-token",
      "/tls/tls.crt",
      "/tls/tls.key",
    ]);
  });
});

describe("servingKeyPairFiles", () => {
  const tls = '[tls]\ncertificate_path = "/tls/tls.crt"\nkey_path = "/tls/tls.key"\n';
  const nodes = { default: [{ storage: "g", address: "tcp://h:1" }] };

  test("the certificate and key of the TLS listener", () => {
    expect(servingKeyPairFiles(configWith(nodes, `tls_listen_addr = "tls://127.0.0.1:3305"\n${tls}`))).toEqual([
      "/tls/tls.crt",
      "/tls/tls.key",
    ]);
  });

  test("none without a TLS listener, even when [tls] names files (they serve nothing)", () => {
    expect(servingKeyPairFiles(configWith(nodes, tls))).toEqual([]);
  });
});

describe("tlsListenerChanges", () => {
  const nodes = { default: [{ storage: "g", address: "tcp://h:1" }] };
  const listener = (addr: string, cert: string) =>
    configWith(nodes, `tls_listen_addr = "${addr}"\n[tls]\ncertificate_path = "${cert}"\nkey_path = "/tls/tls.key"\n`);

  test("reports another address or other file paths, not the same ones", () => {
    const running = listener("127.0.0.1:3305", "/tls/tls.crt");
    expect(tlsListenerChanges(running, listener("127.0.0.1:3305", "/tls/tls.crt"))).toEqual([]);
    expect(tlsListenerChanges(running, listener("127.0.0.1:3306", "/tls/new.crt"))).toEqual([
      'tls_listen_addr changed from "127.0.0.1:3305" to "127.0.0.1:3306"',
      'tls.certificate_path changed from "/tls/tls.crt" to "/tls/new.crt"',
    ]);
  });
});

describe("withNodeTokens", () => {
  test("replaces the tokens it is told about and leaves the input alone", () => {
    const config = configWith({
      default: [
        { storage: "gitaly-1", address: "tcp://10.0.0.1:8075", token: "old-1" },
        { storage: "gitaly-2", address: "tcp://10.0.0.2:8075", token: "old-2" },
      ],
    });
    const live = withNodeTokens(config, (vs, storage) =>
      vs === "default" && storage === "gitaly-1" ? "new-1" : undefined,
    );
    expect(nodeTokensOf(live).map((n) => n.token)).toEqual(["new-1", "old-2"]);
    expect(nodeTokensOf(config).map((n) => n.token)).toEqual(["old-1", "old-2"]);
    expect(live.listen_addr).toBe(config.listen_addr);
  });
});
