// A grpc-js server interceptor that logs every call as one structured line and
// feeds the go-grpc-prometheus metrics. It is the outermost interceptor, so calls
// rejected by auth or the limiter are logged and counted too.
import * as grpc from "@grpc/grpc-js";
import { CORRELATION_ID_KEY, type Logger, newCorrelationId } from "../logging.js";
import { type GrpcServerMetrics, grpcCodeName } from "../metrics.js";

type GrpcType = "unary" | "client_stream" | "server_stream" | "bidi_stream";

function grpcType(def: grpc.ServerMethodDefinition<unknown, unknown>): GrpcType {
  if (def.requestStream && def.responseStream) return "bidi_stream";
  if (def.requestStream) return "client_stream";
  if (def.responseStream) return "server_stream";
  return "unary";
}

/** Splits "/gitaly.RepositoryService/RepositoryExists" into service and method. */
export function splitMethod(path: string): { service: string; method: string } {
  const [, service = "unknown", method = "unknown"] = path.split("/");
  return { service, method };
}

interface RepositoryLike {
  storageName?: string;
  relativePath?: string;
  glRepository?: string;
  glProjectPath?: string;
}

function repositoryOf(message: unknown): RepositoryLike | undefined {
  if (message && typeof message === "object" && "repository" in message) {
    const repo = (message as { repository?: unknown }).repository;
    if (repo && typeof repo === "object") return repo as RepositoryLike;
  }
  return undefined;
}

// Handlers that decode requests themselves (Praefect relays raw bytes) name the call's
// repository here, keyed by the request metadata object the interceptor also sees.
const describedRepositories = new WeakMap<grpc.Metadata, RepositoryLike>();

/**
 * Names the repository a call is about, for its "finished call" line, when the interceptor
 * cannot read it from the request (a handler registered with raw bytes). `requestMetadata`
 * is the call's own metadata object (`call.metadata`).
 */
export function describeCallRepository(requestMetadata: grpc.Metadata, repository: RepositoryLike): void {
  describedRepositories.set(requestMetadata, repository);
}

export interface ObservabilityOptions {
  logger: Logger;
  metrics: GrpcServerMetrics;
  /** Methods logged at debug level only (health checks would drown everything). */
  quietMethods?: ReadonlySet<string>;
}

export function observabilityInterceptor({
  logger,
  metrics,
  quietMethods,
}: ObservabilityOptions): grpc.ServerInterceptor {
  return (def, call) => {
    const { service, method } = splitMethod(def.path);
    const type = grpcType(def);
    const labels = { grpc_type: type, grpc_service: service, grpc_method: method };
    const start = process.hrtime.bigint();
    let correlationId = "";
    let repository: RepositoryLike | undefined;
    let requestMetadata: grpc.Metadata | undefined;
    metrics.started.inc(labels);

    return new grpc.ServerInterceptingCall(call, {
      start(next) {
        next({
          onReceiveMetadata(metadata, mdNext) {
            const given = metadata.get(CORRELATION_ID_KEY)[0];
            correlationId = typeof given === "string" && given !== "" ? given : newCorrelationId();
            if (!given) metadata.set(CORRELATION_ID_KEY, correlationId);
            requestMetadata = metadata;
            mdNext(metadata);
          },
          onReceiveMessage(message, msgNext) {
            repository ??= repositoryOf(message);
            msgNext(message);
          },
        });
      },
      sendStatus(status, next) {
        const seconds = Number(process.hrtime.bigint() - start) / 1e9;
        const code = grpcCodeName(status.code ?? grpc.status.UNKNOWN);
        metrics.handled.inc({ ...labels, grpc_code: code });
        metrics.handlingSeconds.observe(labels, seconds);
        if (!repository && requestMetadata) repository = describedRepositories.get(requestMetadata);
        const fields = {
          correlation_id: correlationId,
          "grpc.service": service,
          "grpc.method": method,
          "grpc.code": code,
          "grpc.time_ms": Math.round(seconds * 1e6) / 1e3,
          "grpc.request.storage": repository?.storageName,
          "grpc.request.repoPath": repository?.relativePath,
          "grpc.request.glRepository": repository?.glRepository || undefined,
          "grpc.request.glProjectPath": repository?.glProjectPath || undefined,
          peer_address: call.getPeer(),
          ...(status.code ? { error: status.details } : {}),
        };
        if (quietMethods?.has(def.path) && !status.code) logger.debug(fields, "finished call");
        else if (status.code && status.code !== grpc.status.CANCELLED) logger.warn(fields, "finished call");
        else logger.info(fields, "finished call");
        next(status);
      },
    });
  };
}
