// `gitaly check`'s probe of GitLab's internal API: GET <gitlab.url>/api/v4/internal/check,
// authenticated the way gitlab-shell's client does (a short-lived HS256 JWT in
// Gitlab-Shell-Api-Request, optional basic auth), over http, https or http+unix.
import { createHmac } from "node:crypto";
import { readdir, readFile } from "node:fs/promises";
import { request as httpRequest, type IncomingMessage, type RequestOptions } from "node:http";
import { request as httpsRequest } from "node:https";
import { join } from "node:path";
import { rootCertificates } from "node:tls";
import { loadTlsKeyPair } from "../../shared/config/fs-checks.js";
import { tlsConfigured } from "../../shared/config/sections.js";
import type { GitalyConfig } from "./schema.js";

/** GitLab's answer to /internal/check (field names as GitLab sends them). */
export interface GitlabCheckInfo {
  gitlab_version: string;
  gitlab_revision: string;
  api_version: string;
  /** Whether GitLab reaches Redis; the check itself may pass while this is false. */
  redis: boolean;
}

const INTERNAL_API = "/api/v4/internal";
// gitlab-shell's client default when http-settings.read_timeout is 0.
const DEFAULT_READ_TIMEOUT_SECONDS = 300;
const JWT_ISSUER = "gitlab-shell";
const JWT_TTL_SECONDS = 60;

function base64url(data: string | Buffer): string {
  return Buffer.from(data).toString("base64url");
}

/**
 * The Gitlab-Shell-Api-Request header value: HS256 JWT, iss "gitlab-shell", one-minute TTL,
 * signed with the secret with surrounding whitespace trimmed.
 */
export function signGitlabShellJwt(secret: string, nowSeconds = Math.floor(Date.now() / 1000)): string {
  const header = base64url(JSON.stringify({ alg: "HS256", typ: "JWT" }));
  const claims = base64url(JSON.stringify({ iss: JWT_ISSUER, exp: nowSeconds + JWT_TTL_SECONDS, iat: nowSeconds }));
  const signature = createHmac("sha256", secret.trim()).update(`${header}.${claims}`).digest("base64url");
  return `${header}.${claims}.${signature}`;
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

export interface GitlabCheckOptions {
  /** The shared secret (see readGitlabSecret). */
  secret: string;
  userAgent?: string;
}

/**
 * Calls GitLab's /internal/check. Throws with upstream's wording: "HTTP GET to GitLab endpoint
 * /check failed: …", "Check HTTP request failed with status: 401", "failed to decode response
 * from /check endpoint: …".
 */
export async function checkGitlabApi(config: GitalyConfig, options: GitlabCheckOptions): Promise<GitlabCheckInfo> {
  const http = config.gitlab["http-settings"];
  const target = targetFor(config.gitlab, "/check");
  const headers: Record<string, string> = {
    ...(target.options.headers as Record<string, string>),
    "Gitlab-Shell-Api-Request": signGitlabShellJwt(options.secret),
    "Content-Type": "application/json",
    "User-Agent": options.userAgent ?? "gitaly",
  };
  if (http.user !== "" && http.password !== "") {
    headers.Authorization = `Basic ${Buffer.from(`${http.user}:${http.password}`).toString("base64")}`;
  }
  const timeoutMs = (http.read_timeout > 0 ? http.read_timeout : DEFAULT_READ_TIMEOUT_SECONDS) * 1000;

  let response: IncomingMessage;
  let body: string;
  try {
    const requestOptions: RequestOptions & { ca?: string[]; cert?: string; key?: string } = {
      ...target.options,
      method: "GET",
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
    response = await new Promise<IncomingMessage>((resolveResponse, reject) => {
      const req = (target.https ? httpsRequest : httpRequest)(requestOptions, resolveResponse);
      req.on("timeout", () => req.destroy(new Error(`no response within ${timeoutMs / 1000}s`)));
      req.on("error", reject);
      req.end();
    });
    body = await readBody(response);
  } catch (error) {
    throw new Error(`HTTP GET to GitLab endpoint /check failed: ${(error as Error).message}`, { cause: error });
  }

  if (response.statusCode !== 200) throw new Error(`Check HTTP request failed with status: ${response.statusCode}`);
  let decoded: unknown;
  try {
    decoded = JSON.parse(body);
  } catch (error) {
    throw new Error(`failed to decode response from /check endpoint: ${(error as Error).message}`, { cause: error });
  }
  const info = (typeof decoded === "object" && decoded !== null ? decoded : {}) as Record<string, unknown>;
  const text = (v: unknown) => (typeof v === "string" ? v : "");
  return {
    gitlab_version: text(info.gitlab_version),
    gitlab_revision: text(info.gitlab_revision),
    api_version: text(info.api_version),
    redis: info.redis === true,
  };
}
