// A minimal gRPC client for unary calls over any Node http2 client session. grpc-js
// can only dial sockets it creates itself; this runs gRPC over a session we built on
// our own transport (a yamux stream of a backchannel connection). Failures reject
// with the same shape as grpc-js's ServiceError ({code, details, metadata}), so
// callers treat both transports alike.
import * as http2 from "node:http2";
import * as grpc from "@grpc/grpc-js";

const { HTTP2_HEADER_METHOD, HTTP2_HEADER_PATH, HTTP2_HEADER_STATUS, HTTP2_HEADER_CONTENT_TYPE, HTTP2_HEADER_TE } =
  http2.constants;

const MESSAGE_HEADER_SIZE = 5;
// grpc-timeout allows at most eight digits per unit.
const MAX_TIMEOUT_VALUE = 99_999_999;

export type CallMetadata = grpc.Metadata | Record<string, string>;

export interface UnaryCallOptions {
  /** Relative deadline; sent as grpc-timeout and enforced locally. */
  deadlineMs?: number;
}

export interface UnaryCallResult {
  response: Uint8Array;
  /** Response headers and trailers, as grpc-js presents metadata. */
  headers: grpc.Metadata;
  trailers: grpc.Metadata;
}

export type GrpcServiceError = grpc.ServiceError;

/** A grpc-js-shaped error: message "<code> <NAME>: <details>" like grpc-js's own. */
export function serviceError(code: grpc.status, details: string, metadata = new grpc.Metadata()): GrpcServiceError {
  return Object.assign(new Error(`${code} ${grpc.status[code]}: ${details}`), { code, details, metadata });
}

/** The grpc-timeout header value for a deadline in milliseconds. */
export function encodeGrpcTimeout(ms: number): string {
  const value = Math.max(0, Math.ceil(ms));
  if (value <= MAX_TIMEOUT_VALUE) return `${value}m`;
  const seconds = Math.ceil(value / 1000);
  if (seconds <= MAX_TIMEOUT_VALUE) return `${seconds}S`;
  return `${Math.min(Math.ceil(seconds / 3600), MAX_TIMEOUT_VALUE)}H`;
}

/** Frames one gRPC message: compressed flag 0, 4-byte big-endian length, payload. */
export function frameMessage(message: Uint8Array): Buffer {
  const frame = Buffer.allocUnsafe(MESSAGE_HEADER_SIZE + message.length);
  frame.writeUInt8(0, 0);
  frame.writeUInt32BE(message.length, 1);
  frame.set(message, MESSAGE_HEADER_SIZE);
  return frame;
}

/** Splits a response body into gRPC messages; throws on compressed or truncated frames. */
export function parseMessages(body: Buffer): Buffer[] {
  const messages: Buffer[] = [];
  let offset = 0;
  while (offset < body.length) {
    if (body.length - offset < MESSAGE_HEADER_SIZE) throw new Error("truncated gRPC message header");
    const compressed = body.readUInt8(offset);
    const length = body.readUInt32BE(offset + 1);
    if (compressed !== 0) throw new Error("compressed gRPC message received, but no compression was negotiated");
    const start = offset + MESSAGE_HEADER_SIZE;
    if (body.length - start < length) throw new Error("truncated gRPC message");
    messages.push(body.subarray(start, start + length));
    offset = start + length;
  }
  return messages;
}

function toHeaders(metadata: CallMetadata | undefined): http2.OutgoingHttpHeaders {
  const headers: http2.OutgoingHttpHeaders = {};
  if (!metadata) return headers;
  if (metadata instanceof grpc.Metadata) {
    for (const [key, values] of Object.entries(metadata.toHttp2Headers())) {
      if (values !== undefined) headers[key] = values;
    }
    return headers;
  }
  for (const [key, value] of Object.entries(metadata)) headers[key.toLowerCase()] = value;
  return headers;
}

function toMetadata(headers: http2.IncomingHttpHeaders): grpc.Metadata {
  const plain: http2.IncomingHttpHeaders = {};
  for (const [key, value] of Object.entries(headers)) {
    if (key.startsWith(":") || key === "grpc-status" || key === "grpc-message") continue;
    if (key === "content-type" || key === "grpc-encoding" || key === "grpc-accept-encoding") continue;
    plain[key] = value;
  }
  try {
    return grpc.Metadata.fromHttp2Headers(plain);
  } catch {
    return new grpc.Metadata();
  }
}

function headerValue(value: string | string[] | undefined): string | undefined {
  return Array.isArray(value) ? value[value.length - 1] : value;
}

function decodeGrpcMessage(value: string | undefined): string {
  if (!value) return "";
  try {
    return decodeURIComponent(value);
  } catch {
    return value;
  }
}

// gRPC's mapping of HTTP statuses for responses that are not gRPC at all.
function codeForHttpStatus(status: number): grpc.status {
  switch (status) {
    case 400:
      return grpc.status.INTERNAL;
    case 401:
      return grpc.status.UNAUTHENTICATED;
    case 403:
      return grpc.status.PERMISSION_DENIED;
    case 404:
      return grpc.status.UNIMPLEMENTED;
    case 429:
    case 502:
    case 503:
    case 504:
      return grpc.status.UNAVAILABLE;
    default:
      return grpc.status.UNKNOWN;
  }
}

// grpc-js's mapping of RST_STREAM codes.
function codeForRstStream(rst: number): { code: grpc.status; details: string } {
  switch (rst) {
    case http2.constants.NGHTTP2_REFUSED_STREAM:
      return { code: grpc.status.UNAVAILABLE, details: "Stream refused by server" };
    case http2.constants.NGHTTP2_CANCEL:
      return { code: grpc.status.CANCELLED, details: "Call cancelled" };
    case http2.constants.NGHTTP2_ENHANCE_YOUR_CALM:
      return { code: grpc.status.RESOURCE_EXHAUSTED, details: "Bandwidth exhausted or memory limit exceeded" };
    case http2.constants.NGHTTP2_INADEQUATE_SECURITY:
      return { code: grpc.status.PERMISSION_DENIED, details: "Protocol not secure enough" };
    default:
      return { code: grpc.status.INTERNAL, details: `Received RST_STREAM with code ${rst}` };
  }
}

/**
 * One unary call: sends `request` (already serialized) to `path`
 * ("/package.Service/Method") and resolves with the serialized response.
 */
export function unaryCall(
  session: http2.ClientHttp2Session,
  path: string,
  request: Uint8Array,
  metadata?: CallMetadata,
  options: UnaryCallOptions = {},
): Promise<UnaryCallResult> {
  return new Promise((resolve, reject) => {
    const headers: http2.OutgoingHttpHeaders = {
      ...toHeaders(metadata),
      [HTTP2_HEADER_METHOD]: "POST",
      [HTTP2_HEADER_PATH]: path,
      [HTTP2_HEADER_CONTENT_TYPE]: "application/grpc",
      [HTTP2_HEADER_TE]: "trailers",
      "grpc-accept-encoding": "identity",
    };
    if (options.deadlineMs !== undefined) headers["grpc-timeout"] = encodeGrpcTimeout(options.deadlineMs);

    let settled = false;
    let timer: NodeJS.Timeout | undefined;
    const settle = (fn: () => void) => {
      if (settled) return;
      settled = true;
      if (timer) clearTimeout(timer);
      fn();
    };
    const fail = (code: grpc.status, details: string, md?: grpc.Metadata) =>
      settle(() => reject(serviceError(code, details, md)));

    let stream: http2.ClientHttp2Stream;
    try {
      stream = session.request(headers, { endStream: false });
    } catch (err) {
      fail(grpc.status.UNAVAILABLE, `cannot start call: ${(err as Error).message}`);
      return;
    }
    if (options.deadlineMs !== undefined) {
      timer = setTimeout(
        () => {
          fail(grpc.status.DEADLINE_EXCEEDED, "Deadline exceeded");
          stream.close(http2.constants.NGHTTP2_CANCEL);
        },
        Math.max(0, options.deadlineMs),
      );
    }

    const chunks: Buffer[] = [];
    let responseHeaders: http2.IncomingHttpHeaders | undefined;
    let trailers: http2.IncomingHttpHeaders | undefined;

    stream.on("response", (h) => {
      responseHeaders = h;
    });
    stream.on("trailers", (t) => {
      trailers = t;
    });
    stream.on("data", (chunk: Buffer) => chunks.push(chunk));
    stream.on("error", (err: Error) => {
      fail(grpc.status.UNAVAILABLE, err.message);
    });
    stream.on("close", () => {
      if (settled) return;
      if (!responseHeaders) {
        if (stream.rstCode !== undefined && stream.rstCode !== http2.constants.NGHTTP2_NO_ERROR) {
          const { code, details } = codeForRstStream(stream.rstCode);
          fail(code, details);
        } else {
          fail(grpc.status.UNAVAILABLE, "connection closed before the server responded");
        }
        return;
      }
      const httpStatus = Number(responseHeaders[HTTP2_HEADER_STATUS]);
      // A trailers-only response carries the status in its only header block.
      const final = trailers ?? responseHeaders;
      const statusHeader = headerValue(final["grpc-status"]);
      const md = toMetadata({ ...(trailers ? responseHeaders : {}), ...final });
      if (statusHeader === undefined) {
        if (httpStatus !== 200) {
          fail(codeForHttpStatus(httpStatus), `Received HTTP status code ${httpStatus}`, md);
          return;
        }
        if (stream.rstCode !== undefined && stream.rstCode !== http2.constants.NGHTTP2_NO_ERROR) {
          const { code, details } = codeForRstStream(stream.rstCode);
          fail(code, details, md);
          return;
        }
        fail(grpc.status.UNKNOWN, "No status received", md);
        return;
      }
      const code = Number(statusHeader) as grpc.status;
      const details = decodeGrpcMessage(headerValue(final["grpc-message"]));
      if (!Number.isInteger(code) || code < 0 || code > 16) {
        fail(grpc.status.UNKNOWN, `invalid grpc-status ${JSON.stringify(statusHeader)}`, md);
        return;
      }
      if (code !== grpc.status.OK) {
        fail(code, details, md);
        return;
      }
      let messages: Buffer[];
      try {
        messages = parseMessages(Buffer.concat(chunks));
      } catch (err) {
        fail(grpc.status.INTERNAL, (err as Error).message, md);
        return;
      }
      // grpc-js's wording for a unary call that got the wrong number of responses.
      if (messages.length === 0) {
        fail(grpc.status.UNIMPLEMENTED, "No message received", md);
        return;
      }
      if (messages.length > 1) {
        fail(grpc.status.UNIMPLEMENTED, "Too many responses received", md);
        return;
      }
      const response = messages[0] as Buffer;
      settle(() =>
        resolve({
          response,
          headers: toMetadata(responseHeaders ?? {}),
          trailers: toMetadata(trailers ?? responseHeaders ?? {}),
        }),
      );
    });

    stream.end(frameMessage(request));
  });
}
