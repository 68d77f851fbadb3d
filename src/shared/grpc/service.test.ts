import { create } from "@bufbuild/protobuf";
import * as grpc from "@grpc/grpc-js";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import {
  Health,
  HealthCheckResponseSchema,
  HealthCheckResponse_ServingStatus as Status,
} from "../../gen/grpc/health/v1/health_pb.js";
import { addService, createClient, methodPath, type PromiseClient } from "./service.js";

// A tiny Health implementation: enough to drive the adapter through a real HTTP/2
// connection on loopback in unary and server-streaming form.
describe("protobuf-es <-> grpc-js adapter", () => {
  const server = new grpc.Server();
  let client: PromiseClient<(typeof Health)["method"]>;

  beforeAll(async () => {
    addService(server, Health, {
      check(call, callback) {
        if (call.request.service === "missing") {
          callback({ code: grpc.status.NOT_FOUND, details: "unknown service missing" });
          return;
        }
        callback(null, create(HealthCheckResponseSchema, { status: Status.SERVING }));
      },
      list(_call, callback) {
        callback(null, { $typeName: "grpc.health.v1.HealthListResponse", statuses: {} });
      },
      watch(call) {
        for (const status of [Status.NOT_SERVING, Status.SERVING]) {
          call.write(create(HealthCheckResponseSchema, { status }));
        }
        call.end();
      },
    });
    const port = await new Promise<number>((resolve, reject) =>
      server.bindAsync("127.0.0.1:0", grpc.ServerCredentials.createInsecure(), (err, p) =>
        err ? reject(err) : resolve(p),
      ),
    );
    const channel = new grpc.Client(`127.0.0.1:${port}`, grpc.credentials.createInsecure());
    client = createClient(Health, channel);
  });
  afterAll(() => {
    client?.channel.close();
    server.forceShutdown();
  });

  it("uses upstream's wire paths", () => {
    expect(methodPath(Health.method.check)).toBe("/grpc.health.v1.Health/Check");
  });

  it("round-trips a unary call", async () => {
    const res = await client.check({ service: "" });
    expect(res.status).toBe(Status.SERVING);
  });

  it("carries status codes and messages", async () => {
    await expect(client.check({ service: "missing" })).rejects.toMatchObject({
      code: grpc.status.NOT_FOUND,
      details: "unknown service missing",
    });
  });

  it("streams server responses as an async iterable", async () => {
    const seen: Status[] = [];
    for await (const msg of client.watch({ service: "" })) seen.push(msg.status);
    expect(seen).toEqual([Status.NOT_SERVING, Status.SERVING]);
  });
});
