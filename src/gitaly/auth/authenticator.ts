// The server's authentication gate. It holds the current [auth] settings, which the
// operator rotates at run time (update() swaps them between two calls, never during
// one), and counts every decision the way upstream does so existing dashboards work.
import { createHash } from "node:crypto";
import * as grpc from "@grpc/grpc-js";
import { Counter, Gauge, type Registry } from "prom-client";
import { AUTHORIZATION_KEY } from "../../shared/auth/v2-token.js";
import { RpcError } from "../../shared/grpc/errors.js";
import { type AuthStatus, authStatus, checkAuthorization } from "./v2.js";

export interface AuthSettings {
  /** The shared secret; empty disables authentication. */
  token: string;
  /** Check and count, but let every request through (used while rotating tokens). */
  transitioning: boolean;
}

/** Services answered without a token, like upstream's UnauthenticatedHealthService. */
const EXEMPT_SERVICE_PREFIXES = ["/grpc.health.v1.Health/"];

export function isAuthExempt(fullMethod: string): boolean {
  return EXEMPT_SERVICE_PREFIXES.some((prefix) => fullMethod.startsWith(prefix));
}

/**
 * A short, non-reversible name for a token, so operators can see which token a node
 * serves (and whether a rotation has reached it) without the token being exposed.
 */
export function tokenGeneration(token: string): string {
  if (token === "") return "none";
  return createHash("sha256").update(token).digest("hex").slice(0, 12);
}

type Labels<T extends string> = Record<T, string>;

/** Reuses a metric already registered under `name` (e.g. by a previous instance). */
function registered<M>(registry: Registry, name: string, make: () => M): M {
  return (registry.getSingleMetric(name) as M | undefined) ?? make();
}

export interface AuthenticatorOptions {
  registry: Registry;
  /** The server clock, replaceable in tests. */
  clock?: () => Date;
}

export class Authenticator {
  #settings: Readonly<AuthSettings>;
  readonly #clock: () => Date;
  readonly #authentications: Counter<"enforced" | "status">;
  readonly #errors: Counter<"version" | "error">;
  readonly #tokenInfo: Gauge<"generation" | "transitioning">;

  constructor(settings: AuthSettings, { registry, clock = () => new Date() }: AuthenticatorOptions) {
    this.#settings = { ...settings };
    this.#clock = clock;
    this.#authentications = registered(
      registry,
      "gitaly_authentications_total",
      () =>
        new Counter({
          name: "gitaly_authentications_total",
          help: "Counts of of Gitaly request authentication attempts",
          labelNames: ["enforced", "status"] as const,
          registers: [registry],
        }),
    );
    this.#errors = registered(
      registry,
      "gitaly_authentication_errors_total",
      () =>
        new Counter({
          name: "gitaly_authentication_errors_total",
          help: "Counts of Gitaly request authentication errors",
          labelNames: ["version", "error"] as const,
          registers: [registry],
        }),
    );
    this.#tokenInfo = registered(
      registry,
      "gitaly_auth_token_info",
      () =>
        new Gauge({
          name: "gitaly_auth_token_info",
          help: "The authentication token generation (sha256 prefix of the token, or none) this server accepts",
          labelNames: ["generation", "transitioning"] as const,
          registers: [registry],
        }),
    );
    this.#publishTokenInfo();
  }

  get settings(): Readonly<AuthSettings> {
    return this.#settings;
  }

  /** Swaps in new settings; calls already authenticated are unaffected, the next call sees them. */
  update(settings: AuthSettings): void {
    this.#settings = { ...settings };
    this.#publishTokenInfo();
  }

  #publishTokenInfo(): void {
    this.#tokenInfo.reset();
    this.#tokenInfo.set(
      { generation: tokenGeneration(this.#settings.token), transitioning: String(this.#settings.transitioning) },
      1,
    );
  }

  #count(status: AuthStatus, transitioning: boolean): void {
    const labels: Labels<"enforced" | "status"> = { enforced: transitioning ? "false" : "true", status };
    this.#authentications.inc(labels);
  }

  /**
   * Decides one call: null lets it through, an RpcError is the status to answer with.
   * Reads the settings once, so a concurrent update() cannot mix two generations.
   */
  authenticate(metadata: grpc.Metadata, fullMethod: string): RpcError | null {
    if (isAuthExempt(fullMethod)) return null;
    const { token, transitioning } = this.#settings;
    if (token === "") {
      this.#count("server disabled authentication", transitioning);
      return null;
    }

    const header = metadata.get(AUTHORIZATION_KEY)[0];
    const check = checkAuthorization(typeof header === "string" ? header : undefined, token, this.#clock());
    if (check.kind === "denied" && check.countedAsV2Error) this.#errors.inc({ version: "v2", error: check.reason });
    this.#count(authStatus(check, transitioning), transitioning);

    if (check.kind === "ok" || transitioning) return null;
    return new RpcError(check.code, check.message);
  }
}

/**
 * A grpc-js server interceptor running the authenticator on each call's metadata. A
 * rejected call is answered right there and never reaches the handler (nor any
 * interceptor registered after this one).
 */
export function authInterceptor(authenticator: Authenticator): grpc.ServerInterceptor {
  return (def, call) => {
    const intercepting: grpc.ServerInterceptingCall = new grpc.ServerInterceptingCall(call, {
      start(next) {
        next({
          onReceiveMetadata(metadata, mdNext) {
            const error = authenticator.authenticate(metadata, def.path);
            if (error === null) {
              mdNext(metadata);
              return;
            }
            const status = error.toServiceError();
            intercepting.sendStatus({ code: status.code, details: status.details, metadata: status.metadata });
          },
        });
      },
    });
    return intercepting;
  };
}
