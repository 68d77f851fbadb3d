// The errors a concurrency limiter answers with. Messages match upstream
// (internal/limiter/concurrency_limiter.go); Rails and Workhorse look for the LimitError
// detail to tell an overloaded server from a failing one.
import { create } from "@bufbuild/protobuf";
import { DurationSchema } from "@bufbuild/protobuf/wkt";
import { LimitErrorSchema } from "../../gen/errors_pb.js";
import { Code, RpcError } from "../../shared/grpc/errors.js";

export const MAX_QUEUE_SIZE_MESSAGE = "maximum queue size reached";
export const MAX_QUEUE_TIME_MESSAGE = "maximum time in concurrency queue reached";

/** The `reason` label of gitaly_requests_dropped_total. */
export type DropReason = "max_size" | "max_time" | "other";

function limitError(message: string): RpcError {
  // Upstream always sends retry_after = 0s: the client decides how to back off.
  return new RpcError(Code.RESOURCE_EXHAUSTED, message).withDetail(
    LimitErrorSchema,
    create(LimitErrorSchema, { errorMessage: message, retryAfter: create(DurationSchema, {}) }),
  );
}

/** The queue for this key already holds max_queue_size callers. */
export function maxQueueSizeError(): RpcError {
  return limitError(MAX_QUEUE_SIZE_MESSAGE);
}

/** The caller waited max_queue_wait (or its own deadline) without getting a slot. */
export function maxQueueTimeError(): RpcError {
  return limitError(MAX_QUEUE_TIME_MESSAGE);
}

/** The caller went away while queued. */
export function dequeuedError(cause: string): RpcError {
  return new RpcError(Code.CANCELLED, `unexpected error when dequeueing request: ${cause}`);
}
