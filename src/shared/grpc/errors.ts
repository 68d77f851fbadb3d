// Errors that carry a gRPC status. RPC code throws RpcError; the handler wrappers in
// handlers.ts turn it into the status, message, metadata and typed details the client
// sees. Anything else thrown becomes Internal, with the error's message.
import type { DescMessage, MessageShape } from "@bufbuild/protobuf";
import { create, toBinary } from "@bufbuild/protobuf";
import { anyPack } from "@bufbuild/protobuf/wkt";
import * as grpc from "@grpc/grpc-js";
import { StatusSchema } from "../../gen/google/rpc/status_pb.js";

export const Code = grpc.status;
export type Code = grpc.status;

interface Detail {
  schema: DescMessage;
  message: MessageShape<DescMessage>;
}

export class RpcError extends Error {
  readonly code: Code;
  /** Extra trailing metadata, e.g. the storage and path of a missing repository. */
  readonly metadata: Record<string, string>;
  readonly details: Detail[];

  constructor(code: Code, message: string, options: { metadata?: Record<string, string>; cause?: unknown } = {}) {
    super(message, { cause: options.cause });
    this.name = "RpcError";
    this.code = code;
    this.metadata = options.metadata ?? {};
    this.details = [];
  }

  /** Attaches a typed detail (sent as google.rpc.Status details). */
  withDetail<D extends DescMessage>(schema: D, message: MessageShape<D>): this {
    this.details.push({ schema, message: message as MessageShape<DescMessage> });
    return this;
  }

  /** The grpc-js representation, ready for a callback or `call.emit("error")`. */
  toServiceError(): grpc.ServiceError {
    const metadata = new grpc.Metadata();
    for (const [k, v] of Object.entries(this.metadata)) metadata.set(k, v);
    if (this.details.length > 0) {
      const status = create(StatusSchema, {
        code: this.code,
        message: this.message,
        details: this.details.map((d) => anyPack(d.schema, d.message)),
      });
      metadata.set("grpc-status-details-bin", Buffer.from(toBinary(StatusSchema, status)));
    }
    return Object.assign(new Error(this.message), {
      code: this.code,
      details: this.message,
      metadata,
    });
  }
}

export const invalidArgument = (msg: string, metadata?: Record<string, string>) =>
  new RpcError(Code.INVALID_ARGUMENT, msg, { metadata });
export const notFound = (msg: string, metadata?: Record<string, string>) =>
  new RpcError(Code.NOT_FOUND, msg, { metadata });
export const failedPrecondition = (msg: string, metadata?: Record<string, string>) =>
  new RpcError(Code.FAILED_PRECONDITION, msg, { metadata });
export const alreadyExists = (msg: string) => new RpcError(Code.ALREADY_EXISTS, msg);
export const internal = (msg: string, cause?: unknown) => new RpcError(Code.INTERNAL, msg, { cause });
export const unavailable = (msg: string) => new RpcError(Code.UNAVAILABLE, msg);

/** Converts anything thrown by RPC code into a grpc-js ServiceError. */
export function toServiceError(err: unknown): grpc.ServiceError {
  if (err instanceof RpcError) return err.toServiceError();
  const e = err as Partial<grpc.ServiceError> | undefined;
  if (e && typeof e.code === "number" && e.code >= 0 && e.code <= 16 && typeof e.details === "string") {
    // Already a gRPC status (e.g. relayed from another node).
    return e as grpc.ServiceError;
  }
  const message = err instanceof Error ? err.message : String(err);
  return new RpcError(Code.INTERNAL, message).toServiceError();
}
