import * as http2 from "node:http2";
import { create, fromBinary, toBinary } from "@bufbuild/protobuf";
import * as grpc from "@grpc/grpc-js";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import {
  Health,
  HealthCheckRequestSchema,
  HealthCheckResponse_ServingStatus,
  HealthCheckResponseSchema,
  HealthListResponseSchema,
} from "../../gen/grpc/health/v1/health_pb.js";
import { encodeGrpcTimeout, frameMessage, parseMessages, unaryCall } from "./http2-client.js";
import { addService, methodPath } from "./service.js";

const CHECK = methodPath(Health.method.check);
const request = (service: string) => toBinary(HealthCheckRequestSchema, create(HealthCheckRequestSchema, { service }));

describe("unary gRPC over a plain http2 session", () => {
  const server = new grpc.Server();
  let session: http2.ClientHttp2Session;

  beforeAll(async () => {
    addService(server, Health, {
      check(call, callback) {
        const service = call.request.service;
        const echo = new grpc.Metadata();
        echo.set("x-echo", String(call.metadata.get("x-test")[0] ?? ""));
        const bin = call.metadata.get("x-blob-bin")[0];
        if (bin) echo.set("x-blob-bin", bin);
        echo.set("x-timeout-set", String(call.getDeadline() !== Number.POSITIVE_INFINITY));
        switch (service) {
          case "missing":
            callback({ code: grpc.status.NOT_FOUND, details: "no such service: ünïcode\nline two", metadata: echo });
            return;
          case "after-headers":
            // Headers first, then a failure: the status arrives in real trailers.
            call.sendMetadata(new grpc.Metadata());
            callback({ code: grpc.status.FAILED_PRECONDITION, details: "late failure", metadata: echo });
            return;
          case "slow":
            setTimeout(() => callback(null, create(HealthCheckResponseSchema, { status: 1 })), 5_000).unref();
            return;
          default:
            callback(
              null,
              create(HealthCheckResponseSchema, { status: HealthCheckResponse_ServingStatus.SERVING }),
              echo,
            );
        }
      },
      list(_call, callback) {
        callback(null, create(HealthListResponseSchema, {}));
      },
      watch(call) {
        call.end();
      },
    });
    const port = await new Promise<number>((resolve, reject) =>
      server.bindAsync("127.0.0.1:0", grpc.ServerCredentials.createInsecure(), (err, p) =>
        err ? reject(err) : resolve(p),
      ),
    );
    session = http2.connect(`http://127.0.0.1:${port}`);
    session.on("error", () => {});
  });

  afterAll(() => {
    session?.destroy();
    server.forceShutdown();
  });

  it("sends a framed request and decodes the response, headers and trailers", async () => {
    const md = new grpc.Metadata();
    md.set("x-test", "hello");
    md.set("x-blob-bin", Buffer.from([0, 1, 2, 255]));
    const result = await unaryCall(session, CHECK, request(""), md, { deadlineMs: 10_000 });
    expect(fromBinary(HealthCheckResponseSchema, result.response).status).toBe(
      HealthCheckResponse_ServingStatus.SERVING,
    );
    expect(result.trailers.get("x-echo")).toEqual(["hello"]);
    expect(result.trailers.get("x-blob-bin")).toEqual([Buffer.from([0, 1, 2, 255])]);
    expect(result.trailers.get("x-timeout-set")).toEqual(["true"]);
  });

  it("accepts plain records as metadata", async () => {
    const result = await unaryCall(session, CHECK, request(""), { "X-Test": "from a record" });
    expect(result.trailers.get("x-echo")).toEqual(["from a record"]);
  });

  it("rejects a trailers-only error like grpc-js does: code, decoded details, metadata", async () => {
    const err = await unaryCall(session, CHECK, request("missing"), { "x-test": "e" }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(Error);
    expect(err).toMatchObject({ code: grpc.status.NOT_FOUND, details: "no such service: ünïcode\nline two" });
    expect((err as grpc.ServiceError).message).toBe("5 NOT_FOUND: no such service: ünïcode\nline two");
    expect((err as grpc.ServiceError).metadata.get("x-echo")).toEqual(["e"]);
  });

  it("rejects an error that follows the response headers", async () => {
    await expect(unaryCall(session, CHECK, request("after-headers"))).rejects.toMatchObject({
      code: grpc.status.FAILED_PRECONDITION,
      details: "late failure",
    });
  });

  it("reports unknown methods as Unimplemented", async () => {
    await expect(unaryCall(session, "/grpc.health.v1.Health/Nope", request(""))).rejects.toMatchObject({
      code: grpc.status.UNIMPLEMENTED,
    });
  });

  it("enforces the deadline", async () => {
    await expect(unaryCall(session, CHECK, request("slow"), {}, { deadlineMs: 100 })).rejects.toMatchObject({
      code: grpc.status.DEADLINE_EXCEEDED,
    });
  });

  it("fails calls on a closed session as Unavailable", async () => {
    const closed = http2.connect("http://127.0.0.1:1");
    closed.on("error", () => {});
    closed.destroy();
    await expect(unaryCall(closed, CHECK, request(""))).rejects.toMatchObject({ code: grpc.status.UNAVAILABLE });
  });
});

describe("gRPC framing helpers", () => {
  it("frames and parses messages", () => {
    const framed = Buffer.concat([frameMessage(Buffer.from("ab")), frameMessage(new Uint8Array())]);
    expect(framed.toString("hex")).toBe("00000000026162" + "0000000000");
    expect(parseMessages(framed).map((m) => m.toString())).toEqual(["ab", ""]);
    expect(() => parseMessages(Buffer.from("0000000005616263", "hex"))).toThrow(/truncated/);
    expect(() => parseMessages(Buffer.from("010000000161", "hex"))).toThrow(/compressed/);
  });

  it("encodes grpc-timeout within eight digits", () => {
    expect(encodeGrpcTimeout(1500)).toBe("1500m");
    expect(encodeGrpcTimeout(99_999_999)).toBe("99999999m");
    expect(encodeGrpcTimeout(100_000_000)).toBe("100000S");
    expect(encodeGrpcTimeout(-5)).toBe("0m");
  });
});
