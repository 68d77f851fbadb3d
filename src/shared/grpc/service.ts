// Bridges protobuf-es service descriptors and @grpc/grpc-js.
//
// protobuf-es keeps the full descriptors (with Gitaly's custom options) at run time,
// which Praefect needs for routing; grpc-js wants a ServiceDefinition with
// serializers. This module derives one from the other so each service is declared
// once, in proto/.
import type { DescMessage, DescMethod, DescService, MessageInitShape, MessageShape } from "@bufbuild/protobuf";
import { create, fromBinary, toBinary } from "@bufbuild/protobuf";
import type { GenService, GenServiceMethods } from "@bufbuild/protobuf/codegenv2";
import * as grpc from "@grpc/grpc-js";

/** The HTTP/2 path of a method, as it travels on the wire: `/gitaly.RepositoryService/RepositoryExists`. */
export function methodPath(method: DescMethod): string {
  return `/${method.parent.typeName}/${method.name}`;
}

function isClientStreaming(method: DescMethod): boolean {
  return method.methodKind === "client_streaming" || method.methodKind === "bidi_streaming";
}

function isServerStreaming(method: DescMethod): boolean {
  return method.methodKind === "server_streaming" || method.methodKind === "bidi_streaming";
}

function serializer<D extends DescMessage>(schema: D): (msg: MessageShape<D>) => Buffer {
  return (msg) => {
    const bytes = toBinary(schema, msg);
    return Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  };
}

function deserializer<D extends DescMessage>(schema: D): (buf: Buffer) => MessageShape<D> {
  return (buf) => fromBinary(schema, buf);
}

/** One grpc-js method definition for a protobuf-es method descriptor. */
export function grpcMethodDefinition(method: DescMethod): grpc.MethodDefinition<unknown, unknown> {
  return {
    path: methodPath(method),
    originalName: method.localName,
    requestStream: isClientStreaming(method),
    responseStream: isServerStreaming(method),
    requestSerialize: serializer(method.input) as (v: unknown) => Buffer,
    requestDeserialize: deserializer(method.input),
    responseSerialize: serializer(method.output) as (v: unknown) => Buffer,
    responseDeserialize: deserializer(method.output),
  };
}

/** A grpc-js ServiceDefinition whose keys are the methods' local (camelCase) names. */
export function grpcServiceDefinition(service: DescService): grpc.ServiceDefinition {
  return Object.fromEntries(service.methods.map((m) => [m.localName, grpcMethodDefinition(m)]));
}

type In<M> = M extends { input: infer I extends DescMessage } ? MessageShape<I> : never;
type Out<M> = M extends { output: infer O extends DescMessage } ? MessageShape<O> : never;

/** The grpc-js handler type for one method, typed by its protobuf-es shapes. */
export type Handler<M> = M extends { methodKind: "unary" }
  ? grpc.handleUnaryCall<In<M>, Out<M>>
  : M extends { methodKind: "server_streaming" }
    ? grpc.handleServerStreamingCall<In<M>, Out<M>>
    : M extends { methodKind: "client_streaming" }
      ? grpc.handleClientStreamingCall<In<M>, Out<M>>
      : grpc.handleBidiStreamingCall<In<M>, Out<M>>;

/** An implementation of every method of a generated service. */
export type ServiceImplementation<S extends GenServiceMethods> = { [K in keyof S]: Handler<S[K]> };

/** Registers a typed implementation of a generated service on a grpc-js server. */
export function addService<S extends GenServiceMethods>(
  server: grpc.Server,
  service: GenService<S>,
  impl: ServiceImplementation<S>,
): void {
  server.addService(
    grpcServiceDefinition(service as DescService),
    impl as unknown as grpc.UntypedServiceImplementation,
  );
}

export interface CallOptions {
  metadata?: grpc.Metadata;
  deadline?: grpc.Deadline;
}

type UnaryFn<M> = (
  request: MessageInitShape<Extract<M, { input: DescMessage }>["input"]>,
  options?: CallOptions,
) => Promise<Out<M>>;
type ServerStreamFn<M> = (
  request: MessageInitShape<Extract<M, { input: DescMessage }>["input"]>,
  options?: CallOptions,
) => AsyncIterable<Out<M>>;
type ClientStreamFn<M> = (
  requests: Iterable<MessageInitShape<Extract<M, { input: DescMessage }>["input"]>>,
  options?: CallOptions,
) => Promise<Out<M>>;
type BidiFn<M> = (options?: CallOptions) => grpc.ClientDuplexStream<In<M>, Out<M>>;

/**
 * A promise-based client: unary calls return promises, server streams are async
 * iterables, client streams take an iterable of requests, bidi calls return the raw
 * duplex stream (their protocols interleave reads and writes).
 */
export type PromiseClient<S extends GenServiceMethods> = {
  [K in keyof S]: S[K] extends { methodKind: "unary" }
    ? UnaryFn<S[K]>
    : S[K] extends { methodKind: "server_streaming" }
      ? ServerStreamFn<S[K]>
      : S[K] extends { methodKind: "client_streaming" }
        ? ClientStreamFn<S[K]>
        : BidiFn<S[K]>;
} & { readonly channel: grpc.Client };

/**
 * Creates a typed client for one service over an existing grpc-js channel (a
 * `grpc.Client` made for any service can be shared, which keeps one HTTP/2
 * connection per peer).
 */
export function createClient<S extends GenServiceMethods>(
  service: GenService<S>,
  channel: grpc.Client,
): PromiseClient<S> {
  const out: Record<string, unknown> = { channel };
  for (const method of (service as DescService).methods) {
    const def = grpcMethodDefinition(method);
    const path = def.path;
    const ser = def.requestSerialize;
    const de = def.responseDeserialize;
    const build = (init: unknown) => create(method.input, init as MessageInitShape<DescMessage>);
    switch (method.methodKind) {
      case "unary":
        out[method.localName] = (req: unknown, opts: CallOptions = {}) =>
          new Promise((resolve, reject) => {
            channel.makeUnaryRequest(
              path,
              ser,
              de,
              build(req),
              opts.metadata ?? new grpc.Metadata(),
              { deadline: opts.deadline },
              (err, value) => (err ? reject(err) : resolve(value)),
            );
          });
        break;
      case "server_streaming":
        out[method.localName] = (req: unknown, opts: CallOptions = {}) =>
          channel.makeServerStreamRequest(path, ser, de, build(req), opts.metadata ?? new grpc.Metadata(), {
            deadline: opts.deadline,
          });
        break;
      case "client_streaming":
        out[method.localName] = (reqs: Iterable<unknown>, opts: CallOptions = {}) =>
          new Promise((resolve, reject) => {
            const call = channel.makeClientStreamRequest(
              path,
              ser,
              de,
              opts.metadata ?? new grpc.Metadata(),
              { deadline: opts.deadline },
              (err, value) => (err ? reject(err) : resolve(value)),
            );
            for (const r of reqs) call.write(build(r));
            call.end();
          });
        break;
      case "bidi_streaming":
        out[method.localName] = (opts: CallOptions = {}) =>
          channel.makeBidiStreamRequest(path, ser, de, opts.metadata ?? new grpc.Metadata(), {
            deadline: opts.deadline,
          });
        break;
    }
  }
  return out as PromiseClient<S>;
}
