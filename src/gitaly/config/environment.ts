// What a loaded Gitaly configuration points at on disk: the I/O half of upstream's ValidateV2
// (storage directories, token file, TLS files, GitLab secret). Parsing is in load.ts.
import {
  checkAuthSection,
  checkCreatableDirectory,
  checkDirectory,
  checkFile,
  checkTlsSection,
  readAuthSectionToken,
  readSecretFile,
} from "../../shared/config/fs-checks.js";
import { type ConfigIssue, configIssue } from "../../shared/config/issues.js";
import type { GitalyConfig } from "./schema.js";

/**
 * Every problem with the files and directories the configuration names, in upstream's order.
 * Storage paths must be writable directories; runtime_dir must exist or be creatable (unlike
 * upstream, which requires it to exist); bin_dir is optional here (this implementation has no
 * helper binaries), checked only when set; the GitLab secret is required only when gitlab.url is
 * set (upstream always requires url and secret, but GitLab is optional for this implementation).
 */
export async function checkGitalyEnvironment(config: GitalyConfig): Promise<ConfigIssue[]> {
  const issues: ConfigIssue[] = [];
  const add = (issue: ConfigIssue | null) => {
    if (issue !== null) issues.push(issue);
  };

  if (config.bin_dir !== "") add(await checkDirectory(config.bin_dir, ["bin_dir"]));
  if (config.runtime_dir !== "") add(await checkCreatableDirectory(config.runtime_dir, ["runtime_dir"]));
  for (const [i, storage] of config.storage.entries()) {
    add(await checkDirectory(storage.path, ["storage", i, "path"], { writable: true }));
  }
  issues.push(...(await checkAuthSection(config.auth)));
  issues.push(...(await checkTlsSection(config.tls)));

  const { gitlab } = config;
  if (gitlab.url !== "" && gitlab.secret === "") {
    if (gitlab.secret_file === "") {
      add(configIssue(["gitlab", "secret_file"], "not set (gitlab.url needs secret or secret_file)"));
    } else {
      add(await checkFile(gitlab.secret_file, ["gitlab", "secret_file"]));
    }
  }
  const http = gitlab["http-settings"];
  if (http.ca_file !== "") add(await checkFile(http.ca_file, ["gitlab", "http-settings", "ca_file"]));
  if (http.ca_path !== "") add(await checkDirectory(http.ca_path, ["gitlab", "http-settings", "ca_path"]));
  if (config["gitlab-shell"].dir !== "") add(await checkDirectory(config["gitlab-shell"].dir, ["gitlab-shell", "dir"]));
  return issues;
}

/**
 * The token clients must sign with: auth.token, else auth.token_file's contents with surrounding
 * whitespace trimmed (upstream uses strings.TrimSpace); "" means authentication is disabled.
 * Throws when the token file cannot be read.
 */
export async function readAuthToken(config: GitalyConfig): Promise<string> {
  return readAuthSectionToken(config.auth);
}

/**
 * The secret shared with GitLab (signs Gitlab-Shell-Api-Request JWTs): gitlab.secret, else the
 * contents of gitlab.secret_file, trimmed. Throws when neither is available.
 */
export async function readGitlabSecret(config: GitalyConfig): Promise<string> {
  if (config.gitlab.secret !== "") return config.gitlab.secret.trim();
  if (config.gitlab.secret_file === "") throw new Error("GitLab secret not configured");
  try {
    return await readSecretFile(config.gitlab.secret_file);
  } catch (error) {
    throw new Error(`reading secret file: ${(error as Error).message}`, { cause: error });
  }
}
