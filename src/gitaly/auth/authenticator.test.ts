import { create } from "@bufbuild/protobuf";
import * as grpc from "@grpc/grpc-js";
import { Registry } from "prom-client";
import { afterAll, beforeAll, beforeEach, describe, expect, it } from "vitest";
import {
  Health,
  HealthCheckResponse_ServingStatus,
  HealthCheckResponseSchema,
} from "../../gen/grpc/health/v1/health_pb.js";
import { type ServerInfoResponse, ServerInfoResponseSchema, ServerService } from "../../gen/server_pb.js";
import { authMetadata, v2AuthInterceptor, v2CallCredentials, v2Token } from "../../shared/auth/v2-token.js";
import { unary } from "../../shared/grpc/handlers.js";
import {
  createClient,
  grpcMethodDefinition,
  grpcServiceDefinition,
  type PromiseClient,
} from "../../shared/grpc/service.js";
import { waitFor } from "../../shared/net.js";
import { Authenticator, authInterceptor, tokenGeneration } from "./authenticator.js";

type Labels = Record<string, string>;

async function metricValue(registry: Registry, name: string, labels: Labels): Promise<number> {
  const metric = (await registry.getMetricsAsJSON()).find((m) => m.name === name);
  const value = metric?.values.find((v) =>
    Object.entries(labels).every(([k, want]) => String((v.labels as Labels)[k]) === want),
  );
  return value?.value ?? 0;
}

async function seriesOf(registry: Registry, name: string): Promise<Labels[]> {
  const metric = (await registry.getMetricsAsJSON()).find((m) => m.name === name);
  return (metric?.values ?? []).map((v) => v.labels as Labels);
}

describe("Authenticator behind a real grpc-js server", () => {
  const registry = new Registry();
  let clockOffsetMs = 0;
  const authenticator = new Authenticator(
    { token: "first-secret", transitioning: false },
    { registry, clock: () => new Date(Date.now() + clockOffsetMs) },
  );
  const server = new grpc.Server({ interceptors: [authInterceptor(authenticator)] });
  let handled = 0;
  let gate: Promise<void> | undefined;
  let channel: grpc.Client;
  let servers: PromiseClient<(typeof ServerService)["method"]>;
  let health: PromiseClient<(typeof Health)["method"]>;
  let address = "";

  const counted = (enforced: string, status: string) =>
    metricValue(registry, "gitaly_authentications_total", { enforced, status });

  async function serverInfo(metadata?: grpc.Metadata): Promise<ServerInfoResponse> {
    return servers.serverInfo({}, { metadata: metadata ?? new grpc.Metadata() });
  }

  beforeAll(async () => {
    server.addService(grpcServiceDefinition(ServerService), {
      serverInfo: unary(async () => {
        handled++;
        await gate;
        return create(ServerInfoResponseSchema, { serverVersion: "test" });
      }),
    });
    server.addService(grpcServiceDefinition(Health), {
      check: unary(async () =>
        create(HealthCheckResponseSchema, { status: HealthCheckResponse_ServingStatus.SERVING }),
      ),
    });
    const port = await new Promise<number>((resolve, reject) =>
      server.bindAsync("127.0.0.1:0", grpc.ServerCredentials.createInsecure(), (err, p) =>
        err ? reject(err) : resolve(p),
      ),
    );
    address = `127.0.0.1:${port}`;
    channel = new grpc.Client(address, grpc.credentials.createInsecure());
    servers = createClient(ServerService, channel);
    health = createClient(Health, channel);
  });

  afterAll(() => {
    channel?.close();
    server.forceShutdown();
  });

  beforeEach(() => {
    authenticator.update({ token: "first-secret", transitioning: false });
    clockOffsetMs = 0;
    gate = undefined;
  });

  it("rejects a call without a token as Unauthenticated, before the handler", async () => {
    const before = handled;
    const count = await counted("true", "unauthenticated");
    await expect(serverInfo()).rejects.toMatchObject({
      code: grpc.status.UNAUTHENTICATED,
      details: "authentication required",
    });
    expect(handled).toBe(before);
    expect(await counted("true", "unauthenticated")).toBe(count + 1);
  });

  it("rejects a token signed with another secret as PermissionDenied", async () => {
    const before = handled;
    const denied = await counted("true", "denied");
    const errors = await metricValue(registry, "gitaly_authentication_errors_total", {
      version: "v2",
      error: "wrong hmac signature",
    });
    await expect(serverInfo(authMetadata("other-secret"))).rejects.toMatchObject({
      code: grpc.status.PERMISSION_DENIED,
      details: "permission denied: wrong hmac signature",
    });
    expect(handled).toBe(before);
    expect(await counted("true", "denied")).toBe(denied + 1);
    expect(
      await metricValue(registry, "gitaly_authentication_errors_total", {
        version: "v2",
        error: "wrong hmac signature",
      }),
    ).toBe(errors + 1);
  });

  it("rejects a token outside the ±30 s window by the server's clock", async () => {
    clockOffsetMs = 120_000;
    await expect(serverInfo(authMetadata("first-secret"))).rejects.toMatchObject({
      code: grpc.status.PERMISSION_DENIED,
      details: "permission denied: token has expired",
    });
    clockOffsetMs = -120_000;
    await expect(serverInfo(authMetadata("first-secret"))).rejects.toMatchObject({
      code: grpc.status.PERMISSION_DENIED,
      details: "permission denied: token's validity window is in future",
    });
  });

  it("rejects an unknown token version", async () => {
    const header = new grpc.Metadata();
    header.set("authorization", `Bearer ${v2Token("first-secret").replace(/^v2\./, "v3.")}`);
    await expect(serverInfo(header)).rejects.toMatchObject({
      code: grpc.status.PERMISSION_DENIED,
      details: "permission denied: invalid token version",
    });
  });

  it("lets a valid token through and counts it as ok", async () => {
    const ok = await counted("true", "ok");
    expect((await serverInfo(authMetadata("first-secret"))).serverVersion).toBe("test");
    expect(await counted("true", "ok")).toBe(ok + 1);
  });

  it("mints a fresh token per call with the client interceptor and with call credentials", async () => {
    const withInterceptor = new grpc.Client(address, grpc.credentials.createInsecure(), {
      interceptors: [v2AuthInterceptor("first-secret")],
    });
    try {
      const client = createClient(ServerService, withInterceptor);
      for (let i = 0; i < 3; i++) expect((await client.serverInfo({})).serverVersion).toBe("test");
    } finally {
      withInterceptor.close();
    }

    const def = grpcMethodDefinition(ServerService.method.serverInfo);
    const viaCredentials = () =>
      new Promise<unknown>((resolve, reject) =>
        channel.makeUnaryRequest(
          def.path,
          def.requestSerialize,
          def.responseDeserialize,
          {},
          new grpc.Metadata(),
          { credentials: v2CallCredentials("first-secret") },
          (err, value) => (err ? reject(err) : resolve(value)),
        ),
      );
    await expect(viaCredentials()).resolves.toMatchObject({ serverVersion: "test" });
  });

  it("exempts the health service and does not count it", async () => {
    const before = JSON.stringify(await registry.getMetricsAsJSON());
    const res = await health.check({ service: "" });
    expect(res.status).toBe(HealthCheckResponse_ServingStatus.SERVING);
    expect(JSON.stringify(await registry.getMetricsAsJSON())).toBe(before);
  });

  it("lets everything through while transitioning, counting enforced=false", async () => {
    authenticator.update({ token: "first-secret", transitioning: true });
    const wouldBeOk = await counted("false", "would be ok");
    const unauthenticated = await counted("false", "unauthenticated");
    const denied = await counted("false", "denied");

    expect((await serverInfo()).serverVersion).toBe("test");
    expect((await serverInfo(authMetadata("other-secret"))).serverVersion).toBe("test");
    expect((await serverInfo(authMetadata("first-secret"))).serverVersion).toBe("test");

    expect(await counted("false", "unauthenticated")).toBe(unauthenticated + 1);
    expect(await counted("false", "denied")).toBe(denied + 1);
    expect(await counted("false", "would be ok")).toBe(wouldBeOk + 1);
  });

  it("allows everything when the token is empty, counted as server disabled authentication", async () => {
    authenticator.update({ token: "", transitioning: false });
    const disabled = await counted("true", "server disabled authentication");
    expect((await serverInfo()).serverVersion).toBe("test");
    expect((await serverInfo(authMetadata("anything"))).serverVersion).toBe("test");
    expect(await counted("true", "server disabled authentication")).toBe(disabled + 2);
    expect(await seriesOf(registry, "gitaly_auth_token_info")).toEqual([
      { generation: "none", transitioning: "false" },
    ]);
  });

  it("swaps the token live: in-flight calls finish, new calls need the new token", async () => {
    let open: () => void = () => {};
    gate = new Promise<void>((resolve) => {
      open = resolve;
    });
    const before = handled;
    const inFlight = serverInfo(authMetadata("first-secret"));
    await waitFor("the first call to reach its handler", async () => handled > before);

    authenticator.update({ token: "second-secret", transitioning: false });
    gate = undefined;
    expect((await serverInfo(authMetadata("second-secret"))).serverVersion).toBe("test");
    await expect(serverInfo(authMetadata("first-secret"))).rejects.toMatchObject({
      code: grpc.status.PERMISSION_DENIED,
      details: "permission denied: wrong hmac signature",
    });

    open();
    expect((await inFlight).serverVersion).toBe("test");

    // During a rotation, transitioning lets clients still holding the old token through.
    authenticator.update({ token: "second-secret", transitioning: true });
    expect((await serverInfo(authMetadata("first-secret"))).serverVersion).toBe("test");
  });

  it("publishes only the current token generation", async () => {
    expect(await seriesOf(registry, "gitaly_auth_token_info")).toEqual([
      { generation: tokenGeneration("first-secret"), transitioning: "false" },
    ]);
    authenticator.update({ token: "second-secret", transitioning: true });
    expect(await seriesOf(registry, "gitaly_auth_token_info")).toEqual([
      { generation: tokenGeneration("second-secret"), transitioning: "true" },
    ]);
    expect(await metricValue(registry, "gitaly_auth_token_info", {})).toBe(1);
  });
});

describe("tokenGeneration", () => {
  it("is the first 12 hex characters of the token's sha256, or none", () => {
    // sha256("abc") is the FIPS 180-2 test vector ba7816bf8f01cfea…
    expect(tokenGeneration("abc")).toBe("ba7816bf8f01");
    expect(tokenGeneration("")).toBe("none");
    expect(tokenGeneration("first-secret")).not.toContain("first");
  });
});
