// One HTTP request to GitLab's internal API (/api/v4/internal/...), made the way
// gitlab-shell's client makes it: a fresh JWT per request, optional basic auth, JSON
// bodies, over http, https (extra CAs, Gitaly's certificate as client certificate) or
// http+unix. Status handling is left to the callers, which differ per endpoint.
import { readdir, readFile } from "node:fs/promises";
import { request as httpRequest, type IncomingMessage, type RequestOptions } from "node:http";
import { request as httpsRequest } from "node:https";
import { join } from "node:path";
import { rootCertificates } from "node:tls";
import { loadTlsKeyPair } from "../../shared/config/fs-checks.js";
import { tlsConfigured } from "../../shared/config/sections.js";
import type { GitalyConfig } from "../config/schema.js";
import { GITLAB_SHELL_API_HEADER, signGitlabShellJwt } from "./jwt.js";

export const INTERNAL_API = "/api/v4/internal";
// gitlab-shell's client default when http-settings.read_timeout is 0.
const DEFAULT_READ_TIMEOUT_SECONDS = 300;

/** What the transport needs from the configuration. */
export type GitlabTransportConfig = Pick<GitalyConfig, "gitlab" | "tls">;

export interface InternalApiRequest {
  method: "GET" | "POST";
  /** Below /api/v4/internal, e.g. "/allowed". */
  endpoint: string;
  /** Sent as JSON. */
  body?: unknown;
  /** The shared secret that signs the JWT. */
  secret: string;
  userAgent?: string;
  /** The pushing client's address, sent as X-Forwarded-For. */
  remoteIp?: string;
}

export interface InternalApiResponse {
  status: number;
  /** The media type without parameters, lower case ("application/json"); "" when absent. */
  mediaType: string;
  body: string;
}

interface Target {
  https: boolean;
  options: RequestOptions;
}

function targetFor(gitlab: GitalyConfig["gitlab"], endpoint: string): Target {
  // Upstream path-unescapes the URL first, which is how a socket path can be written %2F-encoded.
  const url = decodeURIComponent(gitlab.url);
  const unixPrefix = "http+unix://";
  if (url.startsWith(unixPrefix)) {
    const root = gitlab.relative_url_root.replace(/^\/+|\/+$/g, "");
    return {
      https: false,
      options: {
        socketPath: url.slice(unixPrefix.length),
        path: `${root === "" ? "" : `/${root}`}${INTERNAL_API}${endpoint}`,
        headers: { host: "unix" },
      },
    };
  }
  const parsed = new URL(url);
  const base = parsed.pathname.replace(/\/+$/, "");
  return {
    https: parsed.protocol === "https:",
    options: {
      protocol: parsed.protocol,
      hostname: parsed.hostname.replace(/^\[|\]$/g, ""),
      port: parsed.port === "" ? undefined : Number(parsed.port),
      path: `${base}${INTERNAL_API}${endpoint}`,
      headers: { host: parsed.host },
    },
  };
}

async function extraCertificateAuthorities(http: GitalyConfig["gitlab"]["http-settings"]): Promise<string[]> {
  const pems: string[] = [];
  if (http.ca_file !== "") pems.push(await readFile(http.ca_file, "utf8"));
  if (http.ca_path !== "") {
    for (const entry of await readdir(http.ca_path, { withFileTypes: true })) {
      if (entry.isFile() && /\.(pem|crt)$/.test(entry.name))
        pems.push(await readFile(join(http.ca_path, entry.name), "utf8"));
    }
  }
  return pems;
}

function readBody(response: IncomingMessage): Promise<string> {
  return new Promise((resolveBody, reject) => {
    const chunks: Buffer[] = [];
    response.on("data", (chunk: Buffer) => chunks.push(chunk));
    response.on("end", () => resolveBody(Buffer.concat(chunks).toString("utf8")));
    response.on("error", reject);
  });
}

/**
 * Sends one request and returns whatever GitLab answered, whatever the status. Rejects only
 * when no answer arrived (connection refused, TLS failure, read timeout).
 */
export async function internalApiRequest(
  config: GitlabTransportConfig,
  request: InternalApiRequest,
): Promise<InternalApiResponse> {
  const http = config.gitlab["http-settings"];
  const target = targetFor(config.gitlab, request.endpoint);
  const headers: Record<string, string> = {
    ...(target.options.headers as Record<string, string>),
    [GITLAB_SHELL_API_HEADER]: signGitlabShellJwt(request.secret),
    "Content-Type": "application/json",
    "User-Agent": request.userAgent ?? "gitaly",
    // Like gitlab-shell's client: one request per connection.
    Connection: "close",
  };
  if (http.user !== "" && http.password !== "") {
    headers.Authorization = `Basic ${Buffer.from(`${http.user}:${http.password}`).toString("base64")}`;
  }
  if (request.remoteIp) headers["X-Forwarded-For"] = request.remoteIp;
  const payload = request.body === undefined ? undefined : Buffer.from(JSON.stringify(request.body), "utf8");
  if (payload) headers["Content-Length"] = String(payload.length);
  const timeoutMs = (http.read_timeout > 0 ? http.read_timeout : DEFAULT_READ_TIMEOUT_SECONDS) * 1000;

  const requestOptions: RequestOptions & { ca?: string[]; cert?: string; key?: string } = {
    ...target.options,
    method: request.method,
    headers,
    timeout: timeoutMs,
  };
  if (target.https) {
    const extra = await extraCertificateAuthorities(http);
    if (extra.length > 0) requestOptions.ca = [...rootCertificates, ...extra];
    // Upstream presents Gitaly's own certificate as a client certificate.
    if (tlsConfigured(config.tls)) {
      const pair = await loadTlsKeyPair(config.tls);
      requestOptions.cert = pair.certificatePem;
      requestOptions.key = pair.keyPem;
    }
  }
  const response = await new Promise<IncomingMessage>((resolveResponse, reject) => {
    const req = (target.https ? httpsRequest : httpRequest)(requestOptions, resolveResponse);
    req.on("timeout", () => req.destroy(new Error(`no response within ${timeoutMs / 1000}s`)));
    req.on("error", reject);
    req.end(payload);
  });
  const body = await readBody(response);
  const contentType = response.headers["content-type"] ?? "";
  return {
    status: response.statusCode ?? 0,
    mediaType: (contentType.split(";")[0] ?? "").trim().toLowerCase(),
    body,
  };
}
