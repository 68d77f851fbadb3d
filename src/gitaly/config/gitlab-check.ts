// `gitaly check`'s probe of GitLab's internal API: GET <gitlab.url>/api/v4/internal/check,
// authenticated the way gitlab-shell's client does (a short-lived HS256 JWT in
// Gitlab-Shell-Api-Request, optional basic auth), over http, https or http+unix.
// The transport and the JWT live in ../gitlab/, shared with the hooks' client.
import { internalApiRequest } from "../gitlab/http-transport.js";
import type { GitalyConfig } from "./schema.js";

export { signGitlabShellJwt } from "../gitlab/jwt.js";

/** GitLab's answer to /internal/check (field names as GitLab sends them). */
export interface GitlabCheckInfo {
  gitlab_version: string;
  gitlab_revision: string;
  api_version: string;
  /** Whether GitLab reaches Redis; the check itself may pass while this is false. */
  redis: boolean;
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
  let response: Awaited<ReturnType<typeof internalApiRequest>>;
  try {
    response = await internalApiRequest(config, {
      method: "GET",
      endpoint: "/check",
      secret: options.secret,
      ...(options.userAgent === undefined ? {} : { userAgent: options.userAgent }),
    });
  } catch (error) {
    throw new Error(`HTTP GET to GitLab endpoint /check failed: ${(error as Error).message}`, { cause: error });
  }

  if (response.status !== 200) throw new Error(`Check HTTP request failed with status: ${response.status}`);
  let decoded: unknown;
  try {
    decoded = JSON.parse(response.body);
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
