// The Gitlab-Shell-Api-Request header GitLab's internal API authenticates callers with.
import { createHmac } from "node:crypto";

export const GITLAB_SHELL_API_HEADER = "Gitlab-Shell-Api-Request";

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
