// What a loaded Praefect configuration points at on disk: the token file ([auth] token_file,
// which must exist with mode 0600 or 0400, as upstream's auth.Validate requires) and the TLS key
// pair. Parsing is in load.ts.
import { checkAuthSection, checkTlsSection, readAuthSectionToken } from "../../shared/config/fs-checks.js";
import type { ConfigIssue } from "../../shared/config/issues.js";
import type { PraefectConfig } from "./schema.js";

export async function checkPraefectEnvironment(config: PraefectConfig): Promise<ConfigIssue[]> {
  return [...(await checkAuthSection(config.auth)), ...(await checkTlsSection(config.tls))];
}

/** The token clients must sign with ("" disables authentication); throws when token_file is unreadable. */
export function readPraefectAuthToken(config: Pick<PraefectConfig, "auth">): Promise<string> {
  return readAuthSectionToken(config.auth);
}
