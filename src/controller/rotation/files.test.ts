// The file environment on real files in a temp dir: configs rendered by src/shared/render, token
// files, a metrics endpoint on loopback, and the rotation record.
import { mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from "node:fs";
import { createServer, type Server } from "node:http";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, test } from "vitest";
import { tokenGeneration } from "../../gitaly/auth/authenticator.js";
import { type GitalyRenderParams, renderGitalyConfig, renderPraefectConfig } from "../../shared/render/index.js";
import {
  fileRotationEnvironment,
  fileRotationStore,
  type ServerFiles,
  setAuthTransitioning,
  tokenFilesOfConfigs,
} from "./files.js";
import { initialRotationState } from "./machine.js";

const dir = mkdtempSync(join(tmpdir(), "rotation-files-"));
const internalFile = join(dir, "gitaly-token");
const clientFile = join(dir, "praefect-token");
const gatewayFile = join(dir, "gateway-token");
const gitalyConfig = join(dir, "gitaly.toml");
const praefectConfig = join(dir, "praefect.toml");

const gitalyParams = (transitioning: boolean): GitalyRenderParams => ({
  listenAddr: "127.0.0.1:8075",
  prometheusListenAddr: "127.0.0.1:9236",
  runtimeDir: join(dir, "run"),
  auth: { tokenFile: internalFile, transitioning },
  storage: { name: "gitaly-0", path: join(dir, "repositories") },
});
const praefectText = (transitioning: boolean) =>
  renderPraefectConfig({
    listenAddr: "127.0.0.1:2305",
    prometheusListenAddr: "127.0.0.1:9652",
    auth: { tokenFile: clientFile, transitioning },
    virtualStorages: [
      {
        name: "default",
        nodes: [
          { storage: "gitaly-0", address: "tcp://127.0.0.1:8075", tokenFile: internalFile },
          { storage: "gitaly-1", address: "tcp://127.0.0.1:8076", tokenFile: internalFile },
        ],
      },
    ],
    database: { host: "127.0.0.1", port: 5432, dbname: "praefect", sslmode: "disable" },
  });

let metricsServer: Server;
let metricsText = "";
let metricsUrl = "";

beforeAll(async () => {
  metricsServer = createServer((_req, res) => res.end(metricsText));
  await new Promise<void>((resolve) => metricsServer.listen(0, "127.0.0.1", resolve));
  const addr = metricsServer.address();
  metricsUrl = `http://127.0.0.1:${typeof addr === "object" && addr ? addr.port : 0}/metrics`;
});

afterAll(async () => {
  await new Promise((resolve) => metricsServer.close(resolve));
  rmSync(dir, { recursive: true, force: true });
});

function servers(): ServerFiles[] {
  return [
    {
      name: "gitaly-0",
      role: "gitaly",
      configPath: gitalyConfig,
      metricsUrl,
      renderConfig: (t) => renderGitalyConfig(gitalyParams(t)),
    },
    { name: "praefect-0", role: "praefect", configPath: praefectConfig, metricsUrl },
  ];
}

describe("setAuthTransitioning", () => {
  test("edits the rendered key in place: the result is what the renderer gives for the other value", () => {
    const off = praefectText(false);
    const on = praefectText(true);
    expect(setAuthTransitioning(off, true)).toBe(on);
    expect(setAuthTransitioning(on, false)).toBe(off);
    expect(setAuthTransitioning(on, true)).toBe(on);
  });

  test("adds a missing key to [auth] and keeps comments and the other tables", () => {
    const text = [
      "# hand-written",
      'listen_addr = "127.0.0.1:1"',
      "[auth]",
      'token_file = "/t" # the token',
      "",
      "[logging]",
      'level = "info"',
      "",
    ].join("\n");
    const out = setAuthTransitioning(text, true);
    expect(out).toContain("# hand-written");
    expect(out).toContain('token_file = "/t" # the token\ntransitioning = true\n\n[logging]');
  });

  test("rewrites an inline [auth] from its parse, keeping every setting", () => {
    const out = setAuthTransitioning('listen_addr = "x"\nauth = { token_file = "/t", transitioning = false }\n', true);
    expect(out).toMatch(/\[auth\]\ntoken_file = "\/t"\ntransitioning = true/);
    expect(out).toContain('listen_addr = "x"');
  });
});

describe("fileRotationEnvironment", () => {
  test("delivers tokens (0600, atomically, only when changed) and [auth] transitioning to every config", async () => {
    writeFileSync(gitalyConfig, renderGitalyConfig(gitalyParams(false)));
    writeFileSync(praefectConfig, praefectText(false), { mode: 0o640 });
    const env = fileRotationEnvironment({
      servers: servers(),
      internalTokenFiles: [internalFile],
      clientTokenFiles: [clientFile, gatewayFile],
    });

    await env.deliver({ transitioning: true, tokens: "new" }, { internal: "int-1", client: "cli-1" });
    expect(readFileSync(internalFile, "utf8")).toBe("int-1\n");
    expect(readFileSync(clientFile, "utf8")).toBe("cli-1\n");
    expect(readFileSync(gatewayFile, "utf8")).toBe("cli-1\n");
    for (const f of [internalFile, clientFile, gatewayFile]) expect(statSync(f).mode & 0o777).toBe(0o600);
    expect(readFileSync(gitalyConfig, "utf8")).toBe(renderGitalyConfig(gitalyParams(true)));
    expect(readFileSync(praefectConfig, "utf8")).toBe(praefectText(true));
    expect(statSync(praefectConfig).mode & 0o777).toBe(0o640);

    // The same delivery again writes nothing (no reload is triggered).
    const before = [internalFile, clientFile, gitalyConfig, praefectConfig].map((f) => statSync(f).ino);
    await env.deliver({ transitioning: true, tokens: "new" }, { internal: "int-1", client: "cli-1" });
    expect([internalFile, clientFile, gitalyConfig, praefectConfig].map((f) => statSync(f).ino)).toEqual(before);

    await env.deliver({ transitioning: false, tokens: "new" }, { internal: "int-1", client: "cli-1" });
    expect(readFileSync(praefectConfig, "utf8")).toBe(praefectText(false));
    expect(readFileSync(gitalyConfig, "utf8")).toBe(renderGitalyConfig(gitalyParams(false)));
  });

  test("observes each server's metrics, and reports one it cannot reach", async () => {
    metricsText = [
      'gitaly_auth_token_info{generation="abc",transitioning="true"} 1',
      'gitaly_authentications_total{enforced="false",status="would be ok"} 7',
      'gitaly_praefect_node_token_info{virtual_storage="default",storage="gitaly-0",generation="def"} 1',
    ].join("\n");
    const env = fileRotationEnvironment({
      servers: [
        ...servers(),
        { name: "gone", role: "gitaly", configPath: gitalyConfig, metricsUrl: "http://127.0.0.1:1/metrics" },
      ],
      internalTokenFiles: [internalFile],
      clientTokenFiles: [clientFile],
    });
    const samples = await env.observe();
    expect(samples[0]).toMatchObject({
      name: "gitaly-0",
      reachable: true,
      servedGeneration: "abc",
      transitioning: true,
    });
    expect(samples[0]?.authCounts).toEqual({ "false/would be ok": 7 });
    expect(samples[1]).toMatchObject({ name: "praefect-0", presentedGenerations: ["def"] });
    expect(samples[2]).toMatchObject({ name: "gone", reachable: false });
  });

  test("finds the token files the configs name", async () => {
    writeFileSync(praefectConfig, praefectText(false));
    expect(await tokenFilesOfConfigs(servers())).toEqual({ internal: [internalFile], client: [clientFile] });
    const inline = join(dir, "inline.toml");
    writeFileSync(inline, '[auth]\ntoken = "secret"\n');
    await expect(tokenFilesOfConfigs([{ name: "g", role: "gitaly", configPath: inline }])).rejects.toThrow(
      /no \[auth\] token_file/,
    );
  });
});

describe("fileRotationStore", () => {
  const recordFile = join(dir, "rotation.json");

  test("outside a rotation the tokens in force are the token files'; during one the record holds them, 0600", async () => {
    writeFileSync(internalFile, "int-a\n", { mode: 0o600 });
    writeFileSync(clientFile, "cli-a\n", { mode: 0o600 });
    const store = fileRotationStore(recordFile, { internalTokenFiles: [internalFile], clientTokenFiles: [clientFile] });
    expect(await store.load()).toEqual({
      state: initialRotationState(1),
      tokens: { current: { internal: "int-a", client: "cli-a" } },
    });

    const during = {
      state: {
        phase: "RollingOut" as const,
        generation: 1,
        targetGeneration: 2,
        from: { internal: tokenGeneration("int-a"), client: tokenGeneration("cli-a") },
        to: { internal: tokenGeneration("int-b"), client: tokenGeneration("cli-a") },
      },
      tokens: {
        current: { internal: "int-a", client: "cli-a" },
        old: { internal: "int-a", client: "cli-a" },
        new: { internal: "int-b", client: "cli-a" },
      },
    };
    await store.save(during);
    expect(statSync(recordFile).mode & 0o777).toBe(0o600);
    expect(await store.load()).toEqual(during);

    await store.save({ state: { phase: "Stable", generation: 2 }, tokens: { current: during.tokens.new } });
    expect(readFileSync(recordFile, "utf8")).not.toContain("int-b");
    writeFileSync(internalFile, "int-b\n");
    expect(await store.load()).toEqual({
      state: { phase: "Stable", generation: 2 },
      tokens: { current: { internal: "int-b", client: "cli-a" } },
    });
  });

  test("a damaged record is refused without echoing its values", async () => {
    writeFileSync(recordFile, JSON.stringify({ state: { phase: "Verifying", generation: 1 }, tokens: { new: 42 } }));
    const store = fileRotationStore(recordFile, { internalTokenFiles: [internalFile], clientTokenFiles: [clientFile] });
    await expect(store.load()).rejects.toThrow(/rotation record .*: unexpected tokens\.new/);
    writeFileSync(
      recordFile,
      JSON.stringify({
        state: { phase: "Verifying", generation: 1 },
        tokens: { current: { internal: "x", client: "y" } },
      }),
    );
    await expect(store.load()).rejects.toThrow(/in phase Verifying but lacks the old or new tokens/);
  });
});
