// How an upstream gRPC failure is shown to a git client over HTTP. Git prints a
// text/plain error body as "remote: ..." lines, so the body says what failed where.
import * as grpc from "@grpc/grpc-js";

/** The HTTP status for a gRPC status code. */
export function httpStatusForGrpcCode(code: grpc.status): number {
  switch (code) {
    case grpc.status.NOT_FOUND:
      return 404;
    case grpc.status.PERMISSION_DENIED:
      return 403;
    case grpc.status.UNAUTHENTICATED:
      return 401;
    case grpc.status.INVALID_ARGUMENT:
      return 400;
    case grpc.status.RESOURCE_EXHAUSTED:
      // Gitaly's concurrency limiter: the client may retry later.
      return 429;
    case grpc.status.UNAVAILABLE:
      return 503;
    default:
      return 500;
  }
}

export interface GrpcLikeError {
  code: grpc.status;
  details: string;
}

/** True for grpc-js ServiceErrors and the backchannel client's errors of the same shape. */
export function isGrpcError(err: unknown): err is GrpcLikeError {
  return (
    typeof err === "object" &&
    err !== null &&
    typeof (err as { code?: unknown }).code === "number" &&
    typeof (err as { details?: unknown }).details === "string"
  );
}

/** Status and message for any failure while serving `what` (e.g. "git-upload-pack group/project.git"). */
export function describeFailure(err: unknown, what: string): { status: number; message: string; grpcCode?: string } {
  if (isGrpcError(err)) {
    const name = grpc.status[err.code] ?? String(err.code);
    return {
      status: httpStatusForGrpcCode(err.code),
      message: `${what}: ${name}: ${err.details || "(no details)"}`,
      grpcCode: name,
    };
  }
  const message = err instanceof Error ? err.message : String(err);
  return { status: 500, message: `${what}: ${message}` };
}
