// The grpc-js side of proxying: every routed method is registered as a bidi stream of raw
// bytes. A call's first message goes to the coordinator for a plan; the call is then relayed
// (over the node channel, or over the node's backchannel when the client brought a
// sidechannel), and the plan decides the final status once the nodes have answered.
import * as grpc from "@grpc/grpc-js";
import { Code, RpcError, toServiceError } from "../../shared/grpc/errors.js";
import type { Logger } from "../../shared/logging.js";
import type { Coordinator, NodeOutcome } from "../router/coordinator.js";
import type { ProxiedMethod } from "../router/method-table.js";
import { nodeRequestMetadata, readFirstMessage, relayedResponseMetadata, relayToNodes } from "./node-calls.js";
import { hasSidechannel, relayWithSidechannel } from "./sidechannel-relay.js";

const identity = (b: Buffer): Buffer => b;

/** The grpc-js definition of a proxied method: bidi, with bytes in and out. */
export function rawMethodDefinition(entry: ProxiedMethod): grpc.MethodDefinition<Buffer, Buffer> {
  return {
    path: entry.path,
    originalName: entry.method.localName,
    requestStream: true,
    responseStream: true,
    requestSerialize: identity,
    requestDeserialize: identity,
    responseSerialize: identity,
    responseDeserialize: identity,
  };
}

type RawCall = grpc.ServerDuplexStream<Buffer, Buffer>;

function sendStatus(call: RawCall, status: grpc.StatusObject): void {
  if (call.cancelled || call.destroyed || call.writableEnded) return;
  if (status.code === Code.OK) {
    call.end(relayedResponseMetadata(status.metadata));
    return;
  }
  // The stream turns an 'error' into the final status, after the responses already written.
  call.emit("error", {
    code: status.code,
    details: status.details,
    metadata: relayedResponseMetadata(status.metadata),
  });
}

function sendError(call: RawCall, err: unknown): void {
  const e = toServiceError(err);
  sendStatus(call, { code: e.code, details: e.details, metadata: e.metadata ?? new grpc.Metadata() });
}

export interface ProxyHandlerDeps {
  coordinator: Coordinator;
  logger: Logger;
}

export function proxyHandler(
  entry: ProxiedMethod,
  deps: ProxyHandlerDeps,
): grpc.handleBidiStreamingCall<Buffer, Buffer> {
  const handle = async (call: RawCall) => {
    const first = await readFirstMessage(call);
    // A client that sent nothing gives nothing to route (upstream's peeker fails with EOF).
    if (first === null) throw new RpcError(Code.INTERNAL, "EOF");
    const plan = await deps.coordinator.plan(entry, first, call.metadata);
    const metadata = nodeRequestMetadata(call.metadata, plan.virtualStorage, plan.extraMetadata);
    let outcomes: NodeOutcome[];
    if (hasSidechannel(call.metadata)) {
      const [target, ...others] = plan.destinations;
      if (!target || others.length > 0 || entry.method.methodKind !== "unary") {
        throw new RpcError(Code.INTERNAL, `sidechannel: cannot relay a sidechannel for ${entry.path}`);
      }
      outcomes = [await relayWithSidechannel(call, entry.path, target, metadata, deps.logger)];
    } else {
      outcomes = await relayToNodes(call, entry.path, plan.destinations, metadata);
    }
    sendStatus(call, await plan.finish(outcomes));
  };
  return (call) => {
    handle(call).catch((err: unknown) => sendError(call, err));
  };
}

/**
 * The grpc-js definition and implementation of `entries` (one service's proxied methods);
 * callers add the service's locally answered methods, typed, before registering it.
 */
export function proxiedServiceDefinition(
  entries: readonly ProxiedMethod[],
  deps: ProxyHandlerDeps,
): {
  definition: Record<string, grpc.MethodDefinition<unknown, unknown>>;
  implementation: grpc.UntypedServiceImplementation;
} {
  const definition: Record<string, grpc.MethodDefinition<unknown, unknown>> = {};
  const implementation: grpc.UntypedServiceImplementation = {};
  for (const entry of entries) {
    definition[entry.method.localName] = rawMethodDefinition(entry) as grpc.MethodDefinition<unknown, unknown>;
    implementation[entry.method.localName] = proxyHandler(entry, deps) as grpc.UntypedHandleCall;
  }
  return { definition, implementation };
}
