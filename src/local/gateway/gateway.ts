// The HTTP git gateway: git smart HTTP on the outside, Gitaly gRPC on the inside,
// doing what GitLab Workhorse does for clones, fetches and pushes:
//   GET  /<repo>.git/info/refs?service=git-upload-pack|git-receive-pack → InfoRefs{UploadPack,ReceivePack}
//   POST /<repo>.git/git-upload-pack   → PostUploadPackWithSidechannel (request and pack over the sidechannel)
//   POST /<repo>.git/git-receive-pack  → PostReceivePack (bidi stream, 128 KiB data frames)
// Responses are streamed with back-pressure; the status line is only sent once the
// upstream produced its first byte, so a failure before that becomes an HTTP error
// the client can read (404 for a missing repository, and so on). A client that goes
// away cancels its gRPC call (or resets its sidechannel).
import { createHash } from "node:crypto";
import { once } from "node:events";
import { readFile } from "node:fs/promises";
import { createServer, type IncomingMessage, type Server, type ServerResponse } from "node:http";
import type { AddressInfo, Socket } from "node:net";
import { performance } from "node:perf_hooks";
import { pipeline, type Readable } from "node:stream";
import { createGunzip } from "node:zlib";
import { create } from "@bufbuild/protobuf";
import { type Repository, RepositorySchema } from "../../gen/shared_pb.js";
import { PostReceivePackRequestSchema } from "../../gen/smarthttp_pb.js";
import { type Logger, newCorrelationId } from "../../shared/logging.js";
import { frames } from "./frames.js";
import { describeFailure } from "./http-status.js";
import { type GitRoute, type GitService, parseGitRoute } from "./routes.js";
import { TokenFile } from "./token-file.js";
import { Upstream } from "./upstream.js";

export interface GatewayOptions {
  host: string;
  /** 0 picks a free port; see Gateway.port. */
  port: number;
  /** The Gitaly or Praefect address: tcp://host:port, tls://host:port or unix:/path. */
  upstream: string;
  /** File holding the upstream's auth token; re-read when it changes. */
  tokenFile: string;
  /** Storage name for every repository (default "default"). */
  storage?: string;
  /** Create a missing repository when a client asks to push to it. */
  createOnPush?: boolean;
  /** PEM file with the CA that signed a tls:// upstream's certificate. */
  tlsCaFile?: string;
  /** TLS server name to verify instead of the upstream's host. */
  tlsServerName?: string;
  logger: Logger;
}

export interface Gateway {
  /** http://host:port, without a trailing slash. */
  readonly url: string;
  readonly port: number;
  /** Stops accepting requests, waits up to `graceMs` for in-flight ones, then closes the upstream connections. */
  close(graceMs?: number): Promise<void>;
}

/** Optional request headers naming the pusher, as Workhorse gets them from Rails; defaults otherwise. */
export const GL_ID_HEADER = "x-gl-id";
export const GL_USERNAME_HEADER = "x-gl-username";
export const GL_REPOSITORY_HEADER = "x-gl-repository";
const DEFAULT_GL_ID = "user-1";
const DEFAULT_GL_USERNAME = "gateway";

const CONTENT_TYPES = {
  "git-upload-pack": {
    advertisement: "application/x-git-upload-pack-advertisement",
    result: "application/x-git-upload-pack-result",
  },
  "git-receive-pack": {
    advertisement: "application/x-git-receive-pack-advertisement",
    result: "application/x-git-receive-pack-result",
  },
} as const;

function header(req: IncomingMessage, name: string): string | undefined {
  const v = req.headers[name];
  return Array.isArray(v) ? v[0] : v;
}

/** A stable "project-<n>" for a path, so hooks and logs see the same id for the same repository. */
export function defaultGlRepository(relativePath: string): string {
  const n = Number.parseInt(createHash("sha1").update(relativePath).digest("hex").slice(0, 8), 16);
  return `project-${(n % 1_000_000) + 1}`;
}

/** The git protocol the client asked for (`Git-Protocol: version=2`), passed on as is; Gitaly validates it. */
function gitProtocol(req: IncomingMessage): string {
  return header(req, "git-protocol") ?? "";
}

/** The request body, gunzipped if the client compressed it (git does for large fetch negotiations). */
function requestBody(req: IncomingMessage): Readable {
  const encoding = (header(req, "content-encoding") ?? "").trim().toLowerCase();
  if (encoding === "" || encoding === "identity") return req;
  if (encoding === "gzip" || encoding === "x-gzip") return pipeline(req, createGunzip(), () => {});
  throw Object.assign(new Error(`unsupported Content-Encoding ${JSON.stringify(encoding)}`), { httpStatus: 415 });
}

/** Streams a 200 response: headers on the first byte, back-pressure on every write. */
class ResponseBody {
  bytes = 0;
  private readonly res: ServerResponse;
  private readonly contentType: string;
  private readonly signal: AbortSignal;

  constructor(res: ServerResponse, contentType: string, signal: AbortSignal) {
    this.res = res;
    this.contentType = contentType;
    this.signal = signal;
  }

  private head(): void {
    if (this.res.headersSent) return;
    this.res.writeHead(200, { "Content-Type": this.contentType, "Cache-Control": "no-cache" });
  }

  async write(chunk: Uint8Array): Promise<void> {
    if (chunk.length === 0) return;
    this.head();
    this.bytes += chunk.length;
    if (!this.res.write(chunk)) await once(this.res, "drain", { signal: this.signal });
  }

  /**
   * Copies a byte stream into the response until it ends, pausing it while the
   * client is slower. Event-driven rather than a `for await` loop: the pack is tens
   * of thousands of chunks, and a promise per chunk shows in the gateway's CPU time.
   */
  copyFrom(source: Readable): Promise<void> {
    return new Promise((resolve, reject) => {
      const res = this.res;
      const cleanup = () => {
        source.off("data", onData);
        source.off("end", onEnd);
        source.off("error", onError);
        source.off("close", onClose);
        res.off("drain", onDrain);
        this.signal.removeEventListener("abort", onAbort);
      };
      const onData = (chunk: Buffer) => {
        if (chunk.length === 0) return;
        this.head();
        this.bytes += chunk.length;
        if (!res.write(chunk)) source.pause();
      };
      const onDrain = () => source.resume();
      const onEnd = () => {
        cleanup();
        resolve();
      };
      const onError = (err: Error) => {
        cleanup();
        reject(err);
      };
      const onClose = () => {
        if (source.readableEnded) return;
        cleanup();
        reject(source.errored ?? new Error("stream closed before its end"));
      };
      const onAbort = () => {
        cleanup();
        reject(this.signal.reason);
      };
      if (this.signal.aborted) {
        onAbort();
        return;
      }
      source.on("data", onData);
      source.once("end", onEnd);
      source.once("error", onError);
      source.once("close", onClose);
      res.on("drain", onDrain);
      this.signal.addEventListener("abort", onAbort, { once: true });
    });
  }

  end(): void {
    this.head();
    this.res.end();
  }
}

function sendText(res: ServerResponse, status: number, message: string): void {
  const body = Buffer.from(`${message}\n`);
  res.writeHead(status, {
    "Content-Type": "text/plain; charset=utf-8",
    "Content-Length": body.length,
    "Cache-Control": "no-cache",
  });
  res.end(body);
}

/** Runs `fn` with `onAbort` wired to the signal (run at once if it already fired). */
async function withAbort<T>(signal: AbortSignal, onAbort: () => void, fn: () => Promise<T>): Promise<T> {
  if (signal.aborted) onAbort();
  signal.addEventListener("abort", onAbort, { once: true });
  try {
    return await fn();
  } finally {
    signal.removeEventListener("abort", onAbort);
  }
}

interface RequestContext {
  req: IncomingMessage;
  res: ServerResponse;
  repository: Repository;
  correlationId: string;
  signal: AbortSignal;
  body?: ResponseBody;
}

export async function startGateway(options: GatewayOptions): Promise<Gateway> {
  const logger = options.logger;
  const storage = options.storage ?? "default";
  const tlsCa = options.tlsCaFile ? await readFile(options.tlsCaFile) : undefined;
  const upstream = new Upstream({
    address: options.upstream,
    tokenFile: new TokenFile(options.tokenFile),
    logger,
    ...(tlsCa ? { tlsCa } : {}),
    ...(options.tlsServerName ? { tlsServerName: options.tlsServerName } : {}),
  });

  const repositoryFor = (relativePath: string, glRepository: string): Repository =>
    create(RepositorySchema, {
      storageName: storage,
      relativePath,
      glRepository,
      glProjectPath: relativePath.replace(/\.git$/, ""),
    });

  async function ensureRepository(ctx: RequestContext): Promise<void> {
    const exists = await upstream.repositoryExists(ctx.repository, await upstream.metadata(ctx.correlationId));
    if (exists) return;
    await upstream.createRepository(ctx.repository, await upstream.metadata(ctx.correlationId));
    logger.info(
      { correlation_id: ctx.correlationId, storage, relative_path: ctx.repository.relativePath },
      "created repository for a push",
    );
  }

  async function infoRefs(ctx: RequestContext, service: GitService): Promise<void> {
    if (service === "git-receive-pack" && options.createOnPush) await ensureRepository(ctx);
    const call = upstream.infoRefs(
      service,
      { repository: ctx.repository, gitProtocol: gitProtocol(ctx.req) },
      await upstream.metadata(ctx.correlationId),
    );
    const body = new ResponseBody(ctx.res, CONTENT_TYPES[service].advertisement, ctx.signal);
    ctx.body = body;
    await withAbort(
      ctx.signal,
      () => call.cancel(),
      async () => {
        for await (const msg of call) await body.write((msg as { data: Uint8Array }).data);
      },
    );
    body.end();
  }

  async function uploadPack(ctx: RequestContext): Promise<void> {
    const input = requestBody(ctx.req);
    const body = new ResponseBody(ctx.res, CONTENT_TYPES["git-upload-pack"].result, ctx.signal);
    ctx.body = body;
    await upstream.postUploadPackWithSidechannel(
      { repository: ctx.repository, gitProtocol: gitProtocol(ctx.req) },
      () => upstream.metadata(ctx.correlationId),
      (sc) =>
        // A reset (not a close) makes the server stop upload-pack at once.
        withAbort(
          ctx.signal,
          () => sc.readable.destroy(),
          async () => {
            const send = async () => {
              try {
                for await (const chunk of input) await sc.write(chunk as Buffer);
                await sc.closeWrite();
              } catch (err) {
                sc.readable.destroy();
                throw err;
              }
            };
            const receive = async () => {
              await body.copyFrom(sc.readable);
            };
            // Both directions at once: upload-pack may answer before it read everything.
            await Promise.all([send(), receive()]);
          },
        ),
    );
    body.end();
  }

  async function receivePack(ctx: RequestContext): Promise<void> {
    const input = requestBody(ctx.req);
    const call = upstream.postReceivePack(await upstream.metadata(ctx.correlationId));
    const body = new ResponseBody(ctx.res, CONTENT_TYPES["git-receive-pack"].result, ctx.signal);
    ctx.body = body;
    // grpc-js re-emits a failed call's status as 'error'; the readers below see it.
    call.on("error", () => {});
    await withAbort(
      ctx.signal,
      () => call.cancel(),
      async () => {
        const send = async () => {
          try {
            call.write(
              create(PostReceivePackRequestSchema, {
                repository: ctx.repository,
                glId: header(ctx.req, GL_ID_HEADER) ?? DEFAULT_GL_ID,
                glUsername: header(ctx.req, GL_USERNAME_HEADER) ?? DEFAULT_GL_USERNAME,
                glRepository: ctx.repository.glRepository,
                gitProtocol: gitProtocol(ctx.req),
              }),
            );
            for await (const frame of frames(input)) {
              if (!call.write(create(PostReceivePackRequestSchema, { data: frame }))) {
                await once(call, "drain", { signal: ctx.signal });
              }
            }
            call.end();
          } catch (err) {
            call.cancel();
            throw err;
          }
        };
        const receive = async () => {
          for await (const msg of call) await body.write((msg as { data: Uint8Array }).data);
        };
        await Promise.all([send(), receive()]);
      },
    );
    body.end();
  }

  async function serve(ctx: RequestContext, route: GitRoute): Promise<void> {
    switch (route.kind) {
      case "info-refs":
        return infoRefs(ctx, route.service);
      case "upload-pack":
        return uploadPack(ctx);
      case "receive-pack":
        return receivePack(ctx);
    }
  }

  async function handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const started = performance.now();
    const correlationId = header(req, "x-request-id") || newCorrelationId();
    const fields = { method: req.method, url: req.url, correlation_id: correlationId };
    if (req.method === "GET" && req.url === "/-/health") {
      sendText(res, 200, "ok");
      return;
    }
    const route = parseGitRoute(req.method, req.url);
    if (route.kind === "error") {
      sendText(res, route.status, route.message);
      logger.info({ ...fields, status: route.status, duration_ms: performance.now() - started }, route.message);
      return;
    }
    const abort = new AbortController();
    res.once("close", () => {
      if (!res.writableFinished) abort.abort(new Error("client disconnected"));
    });
    const glRepository = header(req, GL_REPOSITORY_HEADER) ?? defaultGlRepository(route.relativePath);
    const ctx: RequestContext = {
      req,
      res,
      repository: repositoryFor(route.relativePath, glRepository),
      correlationId,
      signal: abort.signal,
    };
    const what = `${route.kind === "info-refs" ? `info/refs ${route.service}` : route.kind} ${route.relativePath}`;
    try {
      await serve(ctx, route);
      logger.info(
        { ...fields, status: 200, bytes_out: ctx.body?.bytes ?? 0, duration_ms: performance.now() - started },
        `${what}: done`,
      );
    } catch (err) {
      const duration_ms = performance.now() - started;
      if (abort.signal.aborted) {
        res.destroy();
        logger.info({ ...fields, bytes_out: ctx.body?.bytes ?? 0, duration_ms }, `${what}: client disconnected`);
        return;
      }
      const failure = describeFailure(err, what);
      const status = (err as { httpStatus?: number }).httpStatus ?? failure.status;
      if (!res.headersSent) {
        sendText(res, status, failure.message);
      } else {
        // The status line is gone; breaking the connection is the only way to tell git the response is incomplete.
        res.destroy();
      }
      logger.warn(
        { ...fields, status, grpc_code: failure.grpcCode, bytes_out: ctx.body?.bytes ?? 0, duration_ms },
        failure.message,
      );
    }
  }

  const sockets = new Set<Socket>();
  const server: Server = createServer({ requestTimeout: 0, keepAliveTimeout: 5_000 }, (req, res) => {
    handle(req, res).catch((err: unknown) => {
      logger.error({ err }, "gateway: unhandled request failure");
      res.destroy();
    });
  });
  server.on("connection", (socket: Socket) => {
    sockets.add(socket);
    socket.once("close", () => sockets.delete(socket));
  });
  server.on("clientError", (_err, socket) => socket.destroy());
  await new Promise<void>((resolve, reject) => {
    server.once("error", reject);
    server.listen(options.port, options.host, () => {
      server.off("error", reject);
      resolve();
    });
  });
  const { port } = server.address() as AddressInfo;
  const hostForUrl = options.host.includes(":") ? `[${options.host}]` : options.host;
  const url = `http://${hostForUrl}:${port}`;
  logger.info({ listen: url, upstream: options.upstream, storage }, "gateway listening");

  return {
    url,
    port,
    async close(graceMs = 10_000) {
      const closed = new Promise<void>((resolve) => server.close(() => resolve()));
      server.closeIdleConnections();
      const timer = setTimeout(() => {
        for (const s of sockets) s.destroy();
      }, graceMs);
      await closed;
      clearTimeout(timer);
      await upstream.close();
    },
  };
}
