import * as grpc from "@grpc/grpc-js";
import { describe, expect, it } from "vitest";
import { describeFailure, httpStatusForGrpcCode } from "./http-status.js";

describe("httpStatusForGrpcCode", () => {
  it.each([
    [grpc.status.NOT_FOUND, 404],
    [grpc.status.PERMISSION_DENIED, 403],
    [grpc.status.UNAUTHENTICATED, 401],
    [grpc.status.INVALID_ARGUMENT, 400],
    [grpc.status.RESOURCE_EXHAUSTED, 429],
    [grpc.status.UNAVAILABLE, 503],
    [grpc.status.INTERNAL, 500],
    [grpc.status.UNIMPLEMENTED, 500],
    [grpc.status.UNKNOWN, 500],
  ])("gRPC %i → HTTP %i", (code, status) => {
    expect(httpStatusForGrpcCode(code)).toBe(status);
  });
});

describe("describeFailure", () => {
  it("names the request, the gRPC code and the upstream's message", () => {
    const err = Object.assign(new Error("5 NOT_FOUND: repository not found"), {
      code: grpc.status.NOT_FOUND,
      details: "repository not found",
    });
    expect(describeFailure(err, "upload-pack g/p.git")).toEqual({
      status: 404,
      message: "upload-pack g/p.git: NOT_FOUND: repository not found",
      grpcCode: "NOT_FOUND",
    });
  });

  it("turns other errors into 500 with their message", () => {
    expect(describeFailure(new Error("boom"), "x")).toEqual({ status: 500, message: "x: boom" });
  });
});
