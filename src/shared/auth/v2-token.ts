// Client side of Gitaly's v2 authentication: the bearer token is
// `v2.<hex HMAC-SHA256(key=secret, msg=<unix seconds>)>.<unix seconds>`, and the server
// accepts it only within ±30 s of its own clock. A token therefore has to be minted for
// every call, never once per connection; the credentials and interceptor below do that.
import { createHmac } from "node:crypto";
import * as grpc from "@grpc/grpc-js";

export const AUTHORIZATION_KEY = "authorization";

/** The HMAC that signs a v2 token's message (the decimal unix timestamp). */
export function v2Signature(secret: string, message: string): Buffer {
  return createHmac("sha256", secret).update(message).digest();
}

/** A v2 token for `now` (without the `Bearer ` scheme). */
export function v2Token(secret: string, now: Date = new Date()): string {
  const message = String(Math.floor(now.getTime() / 1000));
  return `v2.${v2Signature(secret, message).toString("hex")}.${message}`;
}

/** The value of the `authorization` header: `Bearer v2.<hmac>.<ts>`. */
export function bearerToken(secret: string, now: Date = new Date()): string {
  return `Bearer ${v2Token(secret, now)}`;
}

/** Metadata carrying `authorization: Bearer <v2 token>` for one call made now. */
export function authMetadata(secret: string, now: Date = new Date()): grpc.Metadata {
  const metadata = new grpc.Metadata();
  metadata.set(AUTHORIZATION_KEY, bearerToken(secret, now));
  return metadata;
}

/**
 * Per-call credentials minting a fresh token for every call (grpc-js applies call
 * credentials on insecure channels too). An empty secret means "auth disabled": no header.
 */
export function v2CallCredentials(secret: string, clock: () => Date = () => new Date()): grpc.CallCredentials {
  return grpc.credentials.createFromMetadataGenerator((_options, callback) => {
    callback(null, secret === "" ? new grpc.Metadata() : authMetadata(secret, clock()));
  });
}

/**
 * A client interceptor that sets a fresh token on every call, for channels built with
 * `new grpc.Client(address, creds, { interceptors: [v2AuthInterceptor(secret)] })`.
 * An empty secret adds nothing. A token already present on the call is replaced.
 */
export function v2AuthInterceptor(secret: string, clock: () => Date = () => new Date()): grpc.Interceptor {
  return (options, nextCall) =>
    new grpc.InterceptingCall(nextCall(options), {
      start(metadata, listener, next) {
        if (secret !== "") metadata.set(AUTHORIZATION_KEY, bearerToken(secret, clock()));
        next(metadata, listener);
      },
    });
}
