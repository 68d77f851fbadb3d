import { describe, expect, test } from "vitest";
import { banner, parseReadyLine, type ReadyInfo, readyLine } from "./banner.js";

const info: ReadyInfo = {
  name: "minimal",
  stateDir: "/s",
  pid: 4242,
  startupMs: 6543,
  gatewayUrl: "http://127.0.0.1:8181",
  demo: { relativePath: "demo.git", cloneUrl: "http://127.0.0.1:8181/demo.git" },
  virtualStorage: "default",
  replicationFactor: 3,
  praefectAddress: "tls://127.0.0.1:3305",
  praefect: [
    {
      name: "praefect-0",
      address: "tcp://127.0.0.1:2305",
      tlsAddress: "tls://127.0.0.1:3305",
      metricsUrl: "http://127.0.0.1:9001/metrics",
      pid: 11,
    },
  ],
  gitaly: [
    {
      name: "minimal-gitaly-0",
      address: "tcp://127.0.0.1:9100",
      metricsUrl: "http://127.0.0.1:9002/metrics",
      pid: 12,
    },
  ],
  tokenFiles: { praefect: "/s/secrets/praefect-token", gitaly: "/s/secrets/gitaly-token" },
  caFile: "/s/tls/ca.crt",
  logDir: "/s/logs",
  postgres: { address: "127.0.0.1:5432", database: "praefect", dataDir: "/s/postgres/data", pid: 13 },
};

describe("banner", () => {
  test("tells how to clone, push, point GitLab at Praefect, find tokens, metrics and logs, and stop", () => {
    const text = banner(info);
    expect(text).toContain("git clone http://127.0.0.1:8181/demo.git");
    expect(text).toContain("git push http://127.0.0.1:8181/");
    expect(text).toMatch(/Praefect {2}tls:\/\/127\.0\.0\.1:3305 .*storage "default"/);
    expect(text).toContain("tcp://127.0.0.1:2305");
    expect(text).toContain("CA certificate: /s/tls/ca.crt");
    expect(text).toContain("/s/secrets/praefect-token");
    expect(text).toContain("/s/secrets/gitaly-token");
    expect(text).toContain("http://127.0.0.1:9001/metrics   praefect-0");
    expect(text).toContain("http://127.0.0.1:9002/metrics   minimal-gitaly-0");
    expect(text).toContain("Logs      /s/logs");
    expect(text).toContain("kill 4242");
    expect(text).toContain("(6.5 s)");
    expect(text).toContain("1 Gitaly node, 1 Praefect router, replication factor 3");
  });

  test("a plaintext cluster has no CA line", () => {
    const { caFile: _ca, ...plain } = info;
    const text = banner({ ...plain, praefectAddress: "tcp://127.0.0.1:2305" });
    expect(text).not.toContain("CA certificate");
    expect(text).toContain("plaintext gRPC");
  });
});

describe("READY line", () => {
  test("is one line that parses back", () => {
    const line = readyLine(info);
    expect(line.endsWith("\n")).toBe(true);
    expect(line.trimEnd().includes("\n")).toBe(false);
    expect(parseReadyLine(line.trimEnd())).toEqual(info);
    expect(parseReadyLine("[gitaly-cluster] starting")).toBeUndefined();
  });
});
