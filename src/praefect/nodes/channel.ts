import * as grpc from "@grpc/grpc-js";
import { AUTHORIZATION_KEY, bearerToken, v2AuthInterceptor } from "../../shared/auth/v2-token.js";
import { clusterRootCertificates } from "../../shared/tls/roots.js";
import { parseNodeAddress } from "../config/node-address.js";

/**
 * Trusted roots for tls:// nodes: Node's bundle, plus the file named by SSL_CERT_FILE (which Go,
 * and therefore upstream Praefect, adds to its system pool) so private CAs work the same way.
 */
export function nodeRootCertificates(env: NodeJS.ProcessEnv = process.env): Buffer | null {
  return clusterRootCertificates(env);
}

export interface NodeChannelOptions {
  /** Extra channel options (tests shorten backoffs further). */
  channelOptions?: grpc.ChannelOptions;
}

/** Signs each call with the secret `secret()` returns when the call starts ("" = no header). */
export function liveV2AuthInterceptor(secret: () => string): grpc.Interceptor {
  return (options, nextCall) =>
    new grpc.InterceptingCall(nextCall(options), {
      start(metadata, listener, next) {
        const current = secret();
        if (current !== "") metadata.set(AUTHORIZATION_KEY, bearerToken(current));
        next(metadata, listener);
      },
    });
}

function authInterceptors(token: string | (() => string)): grpc.Interceptor[] {
  if (typeof token === "function") return [liveV2AuthInterceptor(token)];
  return token === "" ? [] : [v2AuthInterceptor(token)];
}

/**
 * A channel to `address` (tcp://, tls://, unix:, dns:) that signs every call with `token`
 * ("" = none), or with what `token()` returns when each call starts.
 */
export function createNodeChannel(
  address: string,
  token: string | (() => string),
  options: NodeChannelOptions = {},
): grpc.Client {
  const parsed = parseNodeAddress(address);
  const credentials = parsed.tls
    ? grpc.credentials.createSsl(nodeRootCertificates())
    : grpc.credentials.createInsecure();
  return new grpc.Client(parsed.grpcTarget, credentials, {
    interceptors: authInterceptors(token),
    // grpc-js backs off up to 2 min between reconnects by default; a node back from a restart
    // must be seen by the next health checks, not minutes later.
    "grpc.initial_reconnect_backoff_ms": 100,
    "grpc.max_reconnect_backoff_ms": 1_000,
    // Praefect relays whatever Gitaly sends; the 4 MiB default would cut large messages.
    "grpc.max_receive_message_length": -1,
    "grpc.max_send_message_length": -1,
    "grpc.keepalive_time_ms": 30_000,
    "grpc.keepalive_timeout_ms": 10_000,
    ...options.channelOptions,
  });
}
