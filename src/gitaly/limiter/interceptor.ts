// Runs the concurrency limiter in front of the handlers. Like upstream, the limit is
// taken on a call's first request message (that is where the repository is) and held
// until the call ends, so a streaming RPC occupies its slot for its whole life.
import type { DescField, DescMessage, DescService } from "@bufbuild/protobuf";
import * as grpc from "@grpc/grpc-js";
import { toServiceError } from "../../shared/grpc/errors.js";
import { methodRouting, targetRepositoryFields } from "../../shared/proto/operations.js";
import type { ConcurrencyLimiter, Release } from "./concurrency-limiter.js";

/** The limiting key of a call from its first request; "" means "not limited". */
export type LimitingKeyFn = (fullMethod: string, request: unknown) => string;

function relativePathOf(repository: unknown): string {
  if (repository && typeof repository === "object" && "relativePath" in repository) {
    const path = (repository as { relativePath?: unknown }).relativePath;
    if (typeof path === "string") return path;
  }
  return "";
}

/**
 * The relative path of the request's top-level `repository` field. Upstream keys on the
 * relative path alone (not the storage), so the same path on two storages shares a limit.
 */
export function repositoryKey(_fullMethod: string, request: unknown): string {
  if (request && typeof request === "object" && "repository" in request) {
    return relativePathOf((request as { repository?: unknown }).repository);
  }
  return "";
}

function fieldValue(message: unknown, field: DescField): unknown {
  if (!message || typeof message !== "object") return undefined;
  const record = message as Record<string, unknown>;
  if (field.oneof) {
    const group = record[field.oneof.localName] as { case?: string; value?: unknown } | undefined;
    return group?.case === field.localName ? group.value : undefined;
  }
  return record[field.localName];
}

/**
 * Keys on the repository flagged `(target_repository)` in the request type, at any depth
 * (e.g. an object pool's repository), as upstream's request info does. Methods that are
 * not repository-scoped get no key; methods outside `services` fall back to repositoryKey.
 */
export function targetRepositoryKey(services: readonly DescService[]): LimitingKeyFn {
  const paths = new Map<string, (readonly DescField[])[]>();
  for (const service of services) {
    for (const method of service.methods) {
      const routing = methodRouting(method);
      paths.set(
        routing.path,
        routing.scope === "repository" ? targetRepositoryFields(method.input as DescMessage) : [],
      );
    }
  }
  return (fullMethod, request) => {
    const fieldPaths = paths.get(fullMethod);
    if (!fieldPaths) return repositoryKey(fullMethod, request);
    for (const fieldPath of fieldPaths) {
      let value: unknown = request;
      for (const field of fieldPath) value = fieldValue(value, field);
      const key = relativePathOf(value);
      if (key !== "") return key;
    }
    return "";
  };
}

function timeoutReason(): Error {
  return Object.assign(new Error("deadline exceeded"), { name: "TimeoutError" });
}

/**
 * A grpc-js server interceptor applying `limiter`. A rejected call is answered with the
 * limiter's status (ResourceExhausted + LimitError) and never reaches the handler.
 */
export function limiterInterceptor(
  limiter: ConcurrencyLimiter,
  keyOf: LimitingKeyFn = repositoryKey,
): grpc.ServerInterceptor {
  return (def, call) => {
    if (!limiter.isLimited(def.path)) return new grpc.ServerInterceptingCall(call);

    let sawFirstMessage = false;
    let ended = false;
    let release: Release | undefined;
    const abort = new AbortController();

    const finish = () => {
      if (ended) return;
      ended = true;
      // A deadline that fires while queued is counted as max_time, like upstream.
      const deadline = call.getDeadline();
      const expired = deadline !== Infinity && new Date(deadline).getTime() <= Date.now();
      abort.abort(expired ? timeoutReason() : undefined);
      release?.();
    };

    const intercepting: grpc.ServerInterceptingCall = new grpc.ServerInterceptingCall(call, {
      start(next) {
        next({
          onReceiveMessage(message, msgNext) {
            if (sawFirstMessage) {
              msgNext(message);
              return;
            }
            sawFirstMessage = true;
            limiter.acquire(def.path, keyOf(def.path, message), abort.signal).then(
              (granted) => {
                if (ended) {
                  granted();
                  return;
                }
                release = granted;
                msgNext(message);
              },
              (err: unknown) => {
                if (ended) return;
                const status = toServiceError(err);
                intercepting.sendStatus({ code: status.code, details: status.details, metadata: status.metadata });
              },
            );
          },
          // grpc-js calls onCancel at the end of every call, completed or not.
          onCancel: finish,
        });
      },
      sendStatus(status, next) {
        finish();
        next(status);
      },
    });
    return intercepting;
  };
}
