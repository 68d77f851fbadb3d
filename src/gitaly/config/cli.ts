// The logic of `gitaly configuration validate` and `gitaly check`, as functions over streams so
// the binary's entry point only wires process.stdin/stdout/stderr and the exit code.
import type { Writable } from "node:stream";
import { ConfigError, type ConfigIssue, formatIssue, validationOutput } from "../../shared/config/issues.js";
import { checkGitalyEnvironment, readGitlabSecret } from "./environment.js";
import { checkGitlabApi } from "./gitlab-check.js";
import { type LoadedGitalyConfig, loadGitalyConfig, loadGitalyConfigFile } from "./load.js";

/** Exit code for invalid configuration, as upstream's validate uses. */
export const VALIDATION_ERROR_EXIT_CODE = 2;

function write(stream: Writable, text: string): Promise<void> {
  return new Promise((resolveWrite, reject) => {
    stream.write(text, (error) => (error ? reject(error) : resolveWrite()));
  });
}

async function writeWarnings(err: Writable, warnings: readonly ConfigIssue[]): Promise<void> {
  for (const warning of warnings) await write(err, `warning: ${formatIssue(warning)}\n`);
}

/**
 * `gitaly configuration validate < config.toml`: exit 0 and no output when valid; otherwise exit 2
 * with upstream's JSON on `out` ({"errors":[{"key":["storage","[0]","path"],"message":"…"}]}),
 * covering syntax errors (with line and column), invalid values and, like upstream, problems with
 * the files and directories the configuration names. Unknown and deprecated keys are warned about
 * on `err` ("warning: auth.tokn: unknown key, ignored") and do not fail validation. Exit 1 only for
 * unexpected failures.
 */
export async function runConfigurationValidate(input: string, out: Writable, err: Writable): Promise<number> {
  let loaded: LoadedGitalyConfig;
  try {
    loaded = loadGitalyConfig(input);
  } catch (error) {
    if (error instanceof ConfigError) {
      await write(out, validationOutput(error.errors));
      return VALIDATION_ERROR_EXIT_CODE;
    }
    await write(err, `processing input data: ${(error as Error).message}\n`);
    return 1;
  }
  await writeWarnings(err, loaded.warnings);
  try {
    const issues = await checkGitalyEnvironment(loaded.config);
    if (issues.length > 0) {
      await write(out, validationOutput(issues));
      return VALIDATION_ERROR_EXIT_CODE;
    }
  } catch (error) {
    await write(err, `processing input data: ${(error as Error).message}\n`);
    return 1;
  }
  return 0;
}

function describeProblems(issues: readonly ConfigIssue[]): string {
  return issues.map((issue) => `  ${formatIssue(issue)}\n`).join("");
}

/**
 * `gitaly check <config>`: loads the configuration, checks what it names on disk, then calls
 * GitLab's /api/v4/internal/check and prints GitLab's version the way upstream does. When
 * gitlab.url is not set, the API check is reported as SKIPPED (exit 0) rather than attempted:
 * GitLab is optional for this implementation. Exit 1 on any failure, 2 on a missing argument.
 */
export async function runCheck(
  configPath: string,
  out: Writable,
  err: Writable,
  options: { userAgent?: string } = {},
): Promise<number> {
  if (configPath === "") {
    await write(err, "usage: gitaly check <gitaly_config_file>\nerror: invalid argument(s)\n");
    return 2;
  }

  let loaded: LoadedGitalyConfig;
  try {
    loaded = await loadGitalyConfigFile(configPath);
  } catch (error) {
    const detail =
      error instanceof ConfigError
        ? `invalid config:\n${describeProblems(error.errors)}`
        : `${(error as Error).message}\n`;
    await write(err, `loading configuration ${JSON.stringify(configPath)}: ${detail}`);
    return 1;
  }
  await writeWarnings(err, loaded.warnings);
  const { config } = loaded;

  await write(out, "Checking configuration: ");
  const issues = await checkGitalyEnvironment(config);
  if (issues.length > 0) {
    await write(out, "FAILED\n");
    await write(err, `invalid config ${JSON.stringify(configPath)}:\n${describeProblems(issues)}`);
    return 1;
  }
  await write(out, "OK\n");

  if (config.gitlab.url === "") {
    await write(out, "Checking GitLab API access: SKIPPED (gitlab.url is not set)\n");
    return 0;
  }

  await write(out, "Checking GitLab API access: ");
  try {
    const secret = await readGitlabSecret(config);
    const info = await checkGitlabApi(config, {
      secret,
      ...(options.userAgent === undefined ? {} : { userAgent: options.userAgent }),
    });
    await write(out, "OK\n");
    await write(out, `GitLab version: ${info.gitlab_version}\n`);
    await write(out, `GitLab revision: ${info.gitlab_revision}\n`);
    await write(out, `GitLab Api version: ${info.api_version}\n`);
    await write(out, `Redis reachable for GitLab: ${info.redis}\n`);
    await write(out, "OK\n");
    return 0;
  } catch (error) {
    await write(out, "FAILED\n");
    await write(err, `${(error as Error).message}\n`);
    return 1;
  }
}
