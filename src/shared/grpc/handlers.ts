// Async handler adapters: RPC code is written as async functions that return the
// response (or yield responses) and throw RpcError; these wrappers speak grpc-js's
// callback and stream API, and make sure every failure becomes a proper status.
import type * as grpc from "@grpc/grpc-js";
import { toServiceError } from "./errors.js";

export function unary<Req, Res>(
  fn: (request: Req, call: grpc.ServerUnaryCall<Req, Res>) => Promise<Res>,
): grpc.handleUnaryCall<Req, Res> {
  return (call, callback) => {
    fn(call.request, call).then(
      (res) => callback(null, res),
      (err: unknown) => callback(toServiceError(err)),
    );
  };
}

/** A server-streaming handler from an async generator of responses; honours backpressure. */
export function serverStream<Req, Res>(
  fn: (request: Req, call: grpc.ServerWritableStream<Req, Res>) => AsyncIterable<Res>,
): grpc.handleServerStreamingCall<Req, Res> {
  return (call) => {
    (async () => {
      for await (const msg of fn(call.request, call)) {
        if (call.cancelled) return;
        if (!call.write(msg)) {
          await new Promise<void>((resolve) => {
            const done = () => {
              call.off("drain", done);
              call.off("close", done);
              resolve();
            };
            call.on("drain", done);
            call.on("close", done);
          });
        }
      }
      call.end();
    })().catch((err: unknown) => {
      // grpc-js turns an "error" event into the call's final status.
      if (!call.cancelled) call.emit("error", toServiceError(err));
    });
  };
}

/** A client-streaming handler: `requests` iterates the client's messages. */
export function clientStream<Req, Res>(
  fn: (requests: AsyncIterable<Req>, call: grpc.ServerReadableStream<Req, Res>) => Promise<Res>,
): grpc.handleClientStreamingCall<Req, Res> {
  return (call, callback) => {
    fn(call as unknown as AsyncIterable<Req>, call).then(
      (res) => callback(null, res),
      (err: unknown) => callback(toServiceError(err)),
    );
  };
}
