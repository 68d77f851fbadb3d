// The gateway's connections to one Gitaly (or Praefect) address, the way GitLab's
// Workhorse holds them: a grpc-js channel for ordinary calls (InfoRefs streams, the
// PostReceivePack bidi stream, repository checks), and one backchannel connection for
// calls with a sidechannel (PostUploadPackWithSidechannel). The backchannel is dialled
// on first use, shared by concurrent requests, and dialled again once it has dropped.
// Every call carries a freshly minted v2 token from the token file.
import { create, type MessageInitShape } from "@bufbuild/protobuf";
import * as grpc from "@grpc/grpc-js";
import { RepositoryService } from "../../gen/repository_pb.js";
import type { Repository } from "../../gen/shared_pb.js";
import {
  type InfoRefsRequestSchema,
  type InfoRefsResponse,
  type PostReceivePackRequest,
  type PostReceivePackResponse,
  type PostUploadPackWithSidechannelRequestSchema,
  type PostUploadPackWithSidechannelResponse,
  SmartHTTPService,
} from "../../gen/smarthttp_pb.js";
import { AUTHORIZATION_KEY, bearerToken } from "../../shared/auth/v2-token.js";
import { grpcTarget } from "../../shared/gitaly/servers.js";
import {
  type BackchannelConnection,
  type BackchannelDialOptions,
  type ClientSidechannel,
  dialBackchannel,
} from "../../shared/grpc/backchannel-client.js";
import { createClient, grpcMethodDefinition, type PromiseClient } from "../../shared/grpc/service.js";
import { CORRELATION_ID_KEY, type Logger } from "../../shared/logging.js";
import type { GitService } from "./routes.js";
import type { TokenFile } from "./token-file.js";

export interface UpstreamOptions {
  /** tcp://host:port, host:port, tls://host:port or unix:/path. */
  address: string;
  tokenFile: TokenFile;
  /** PEM CA bundle to verify a tls:// upstream (default: Node's bundle). */
  tlsCa?: Buffer;
  /** TLS server name to verify instead of the address's host. */
  tlsServerName?: string;
  logger: Logger;
}

function isTls(address: string): boolean {
  return address.startsWith("tls://");
}

export class Upstream {
  readonly address: string;
  private readonly tokenFile: TokenFile;
  private readonly logger: Logger;
  private readonly channel: grpc.Client;
  private readonly repositories: PromiseClient<(typeof RepositoryService)["method"]>;
  private readonly dialOptions: BackchannelDialOptions;
  private backchannel: BackchannelConnection | undefined;
  private dialing: Promise<BackchannelConnection> | undefined;
  private closed = false;

  constructor(options: UpstreamOptions) {
    this.address = options.address;
    this.tokenFile = options.tokenFile;
    this.logger = options.logger;
    const { target } = grpcTarget(options.address);
    const channelOptions: grpc.ChannelOptions = {
      // A restarted upstream should be picked up quickly, not after grpc-js's growing backoff.
      "grpc.initial_reconnect_backoff_ms": 100,
      "grpc.max_reconnect_backoff_ms": 2_000,
    };
    if (options.tlsServerName) {
      channelOptions["grpc.ssl_target_name_override"] = options.tlsServerName;
      channelOptions["grpc.default_authority"] = options.tlsServerName;
    }
    const credentials = isTls(options.address)
      ? grpc.credentials.createSsl(options.tlsCa ?? null)
      : grpc.credentials.createInsecure();
    this.channel = new grpc.Client(target, credentials, channelOptions);
    this.repositories = createClient(RepositoryService, this.channel);
    this.dialOptions = {
      ...(options.tlsCa ? { ca: options.tlsCa } : {}),
      ...(options.tlsServerName ? { servername: options.tlsServerName } : {}),
    };
  }

  /** Metadata for one call: a fresh v2 token (tokens are only valid ±30 s) and the correlation id. */
  async metadata(correlationId: string): Promise<grpc.Metadata> {
    const md = new grpc.Metadata();
    const token = await this.tokenFile.token();
    if (token !== "") md.set(AUTHORIZATION_KEY, bearerToken(token));
    md.set(CORRELATION_ID_KEY, correlationId);
    return md;
  }

  infoRefs(
    service: GitService,
    request: MessageInitShape<typeof InfoRefsRequestSchema>,
    metadata: grpc.Metadata,
  ): grpc.ClientReadableStream<InfoRefsResponse> {
    const method =
      service === "git-upload-pack"
        ? SmartHTTPService.method.infoRefsUploadPack
        : SmartHTTPService.method.infoRefsReceivePack;
    const def = grpcMethodDefinition(method);
    return this.channel.makeServerStreamRequest(
      def.path,
      def.requestSerialize,
      def.responseDeserialize as (b: Buffer) => InfoRefsResponse,
      create(method.input, request),
      metadata,
      {},
    );
  }

  postReceivePack(metadata: grpc.Metadata): grpc.ClientDuplexStream<PostReceivePackRequest, PostReceivePackResponse> {
    const def = grpcMethodDefinition(SmartHTTPService.method.postReceivePack);
    return this.channel.makeBidiStreamRequest(
      def.path,
      def.requestSerialize as (m: PostReceivePackRequest) => Buffer,
      def.responseDeserialize as (b: Buffer) => PostReceivePackResponse,
      metadata,
      {},
    );
  }

  async repositoryExists(repository: Repository, metadata: grpc.Metadata): Promise<boolean> {
    const res = await this.repositories.repositoryExists({ repository }, { metadata });
    return res.exists;
  }

  /** Creates the repository; one created concurrently by someone else counts as success. */
  async createRepository(repository: Repository, metadata: grpc.Metadata): Promise<void> {
    try {
      await this.repositories.createRepository({ repository }, { metadata });
    } catch (err) {
      if ((err as grpc.ServiceError).code !== grpc.status.ALREADY_EXISTS) throw err;
    }
  }

  /**
   * PostUploadPackWithSidechannel with `handler` driving the sidechannel. If the
   * shared backchannel turns out to have dropped before the server opened the
   * sidechannel (so no request byte was consumed), it is dialled again and the call
   * retried once.
   */
  async postUploadPackWithSidechannel<T>(
    request: MessageInitShape<typeof PostUploadPackWithSidechannelRequestSchema>,
    metadata: () => Promise<grpc.Metadata>,
    handler: (sidechannel: ClientSidechannel) => Promise<T>,
  ): Promise<{ response: PostUploadPackWithSidechannelResponse; sidechannel: T }> {
    for (let attempt = 1; ; attempt++) {
      const conn = await this.connection();
      let started = false;
      try {
        return await conn.withSidechannel(
          (sc) => {
            started = true;
            return handler(sc);
          },
          (md) => conn.unary(SmartHTTPService.method.postUploadPackWithSidechannel, request, { metadata: md }),
          await metadata(),
        );
      } catch (err) {
        const code = (err as grpc.ServiceError).code;
        if (attempt === 1 && !started && code === grpc.status.UNAVAILABLE && this.isDropped(conn)) {
          this.logger.warn({ upstream: this.address, err: (err as Error).message }, "backchannel dropped; redialling");
          continue;
        }
        throw err;
      }
    }
  }

  private isDropped(conn: BackchannelConnection): boolean {
    return conn.closed || conn.http2.closed || conn.http2.destroyed;
  }

  /** The shared backchannel connection, dialled if there is none or it dropped. */
  connection(): Promise<BackchannelConnection> {
    if (this.closed) return Promise.reject(new Error(`upstream ${this.address}: gateway is shutting down`));
    if (this.backchannel && !this.isDropped(this.backchannel)) return Promise.resolve(this.backchannel);
    this.dialing ??= dialBackchannel(this.address, this.dialOptions)
      .then(
        (conn) => {
          this.backchannel = conn;
          conn.session.once("close", () => {
            this.logger.info({ upstream: this.address }, "backchannel connection closed");
          });
          return conn;
        },
        (err: unknown) => {
          // Shaped like a gRPC failure so it maps to 503, as an unreachable grpc-js channel would.
          throw Object.assign(new Error(`dialling ${this.address}: ${(err as Error).message}`), {
            code: grpc.status.UNAVAILABLE,
            details: `dialling backchannel to ${this.address}: ${(err as Error).message}`,
          });
        },
      )
      .finally(() => {
        this.dialing = undefined;
      });
    return this.dialing;
  }

  async close(): Promise<void> {
    this.closed = true;
    this.channel.close();
    const pending = this.dialing?.catch(() => undefined);
    const conn = (await pending) ?? this.backchannel;
    this.backchannel = undefined;
    await conn?.close();
  }
}
