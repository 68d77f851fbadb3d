// The auth matrix against a running Gitaly process (v2 tokens, transitioning,
// unauthenticated health), with the metric values it must export.
import { createHmac } from "node:crypto";
import * as grpc from "@grpc/grpc-js";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { Health, HealthCheckResponse_ServingStatus } from "../../../src/gen/grpc/health/v1/health_pb.js";
import { ServerService } from "../../../src/gen/server_pb.js";
import { createClient } from "../../../src/shared/grpc/service.js";
import { type GitalyProcess, metricValue, startGitaly } from "../../harness/gitaly.js";

const TOKEN = "the-right-token";

function tokenAt(secret: string, unixSeconds: number, version = "v2"): string {
  const ts = String(unixSeconds);
  const mac = createHmac("sha256", secret).update(ts).digest("hex");
  return `Bearer ${version}.${mac}.${ts}`;
}

function md(authorization?: string): grpc.Metadata {
  const m = new grpc.Metadata();
  if (authorization !== undefined) m.set("authorization", authorization);
  return m;
}

const now = () => Math.floor(Date.now() / 1000);

describe("Gitaly authentication", () => {
  let gitaly: GitalyProcess;
  let server: ReturnType<typeof createClient<(typeof ServerService)["method"]>>;

  beforeAll(async () => {
    gitaly = await startGitaly({ token: TOKEN });
    server = createClient(ServerService, gitaly.channel(""));
  });
  afterAll(async () => {
    await gitaly?.stop();
  });

  const call = (authorization?: string) => server.serverInfo({}, { metadata: md(authorization) });

  it("accepts a valid v2 token", async () => {
    const res = await call(tokenAt(TOKEN, now()));
    expect(res.storageStatuses.map((s) => s.storageName)).toEqual(["default"]);
  });

  // Tokens are built when each case runs: a token made at collection time would age.
  it.each([
    ["no token", () => undefined, grpc.status.UNAUTHENTICATED, "authentication required"],
    [
      "wrong HMAC",
      () => tokenAt("wrong-secret", now()),
      grpc.status.PERMISSION_DENIED,
      "permission denied: wrong hmac signature",
    ],
    [
      "31 s old",
      () => tokenAt(TOKEN, now() - 31),
      grpc.status.PERMISSION_DENIED,
      "permission denied: token has expired",
    ],
    [
      "31 s in the future",
      // +32: the whole-second timestamp may be up to a second behind the server's clock.
      () => tokenAt(TOKEN, now() + 32),
      grpc.status.PERMISSION_DENIED,
      "permission denied: token's validity window is in future",
    ],
    [
      "bad version",
      () => tokenAt(TOKEN, now(), "v3"),
      grpc.status.PERMISSION_DENIED,
      "permission denied: invalid token version",
    ],
  ])("rejects %s", async (_name, authorization, code, details) => {
    await expect(call(authorization())).rejects.toMatchObject({ code, details });
  });

  it("serves health checks without a token", async () => {
    const health = createClient(Health, gitaly.channel(""));
    const res = await health.check({ service: "" });
    expect(res.status).toBe(HealthCheckResponse_ServingStatus.SERVING);
  });

  it("counts every outcome in gitaly_authentications_total", async () => {
    const m = await gitaly.metrics();
    expect(metricValue(m, "gitaly_authentications_total", { enforced: "true", status: "ok" })).toBe(1);
    expect(metricValue(m, "gitaly_authentications_total", { enforced: "true", status: "unauthenticated" })).toBe(1);
    expect(metricValue(m, "gitaly_authentications_total", { enforced: "true", status: "denied" })).toBe(4);
  });
});

describe("Gitaly authentication while transitioning", () => {
  let gitaly: GitalyProcess;

  beforeAll(async () => {
    gitaly = await startGitaly({ token: TOKEN, transitioning: true });
  });
  afterAll(async () => {
    await gitaly?.stop();
  });

  it("lets every call through and counts what would have happened", async () => {
    const server = createClient(ServerService, gitaly.channel(""));
    await server.serverInfo({}, { metadata: md(tokenAt(TOKEN, now())) });
    await server.serverInfo({}, { metadata: md(tokenAt("wrong-secret", now())) });
    await server.serverInfo({}, { metadata: md() });
    const m = await gitaly.metrics();
    expect(metricValue(m, "gitaly_authentications_total", { enforced: "false", status: "would be ok" })).toBe(1);
    expect(metricValue(m, "gitaly_authentications_total", { enforced: "false", status: "denied" })).toBe(1);
    expect(metricValue(m, "gitaly_authentications_total", { enforced: "false", status: "unauthenticated" })).toBe(1);
    expect(metricValue(m, "gitaly_authentications_total", { enforced: "true" })).toBe(0);
  });
});
