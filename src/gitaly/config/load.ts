// Loading Gitaly's config.toml: pure text → validated config plus warnings. Nothing here touches
// the disk except loadGitalyConfigFile's single read; environment checks live in environment.ts.
import { readFile } from "node:fs/promises";
import { type ConfigWarning, configIssue, type KeySegment } from "../../shared/config/issues.js";
import { parseTomlConfig, valueAt } from "../../shared/config/toml.js";
import { type GitalyConfig, gitalyConfigSchema } from "./schema.js";

export { ConfigError, type ConfigIssue, type ConfigWarning } from "../../shared/config/issues.js";

export interface LoadedGitalyConfig {
  config: GitalyConfig;
  warnings: ConfigWarning[];
}

// Keys upstream has retired; said plainly instead of a bare "unknown key".
const RETIRED_KEYS: Readonly<Record<string, string>> = {
  internal_socket_dir: "internal_socket_dir was replaced by runtime_dir",
  "git.bin_path": "git.bin_path was removed upstream (the git on PATH is used)",
  "git.use_bundled_binaries": "git.use_bundled_binaries was removed upstream",
  "gitaly-ruby": "[gitaly-ruby] was removed upstream",
  ruby: "[ruby] was removed upstream",
  "logging.ruby_sentry_dsn": "logging.ruby_sentry_dsn was removed upstream",
};

const DEPRECATED_ALIASES: ReadonlyArray<[string, string]> = [
  ["max_per_repo", "max_concurrency"],
  ["max_queue_length", "max_queue_size"],
];

function deprecationWarnings(raw: unknown): ConfigWarning[] {
  const limiterTables: KeySegment[][] = [["pack_objects_limiting"], ["pack_objects_limiting", "unauthenticated"]];
  const concurrency = valueAt(raw, ["concurrency"]);
  if (Array.isArray(concurrency)) {
    concurrency.forEach((_, i) => {
      limiterTables.push(["concurrency", i], ["concurrency", i, "unauthenticated"]);
    });
  }
  const warnings: ConfigWarning[] = [];
  for (const table of limiterTables) {
    for (const [old, replacement] of DEPRECATED_ALIASES) {
      if (valueAt(raw, [...table, old]) !== undefined) {
        warnings.push(configIssue([...table, old], `deprecated, use ${replacement} instead`));
      }
    }
  }
  return warnings;
}

/**
 * Parses and validates config.toml text. Throws ConfigError (`.errors`: every problem, each with
 * its key) for a syntax error or invalid values; unknown, retired and deprecated keys come back
 * as warnings. Relative bin_dir/runtime_dir are resolved against the working directory, as
 * upstream does.
 */
export function loadGitalyConfig(tomlText: string, opts: { path?: string } = {}): LoadedGitalyConfig {
  const { value, raw, warnings } = parseTomlConfig(gitalyConfigSchema, tomlText, {
    ...(opts.path === undefined ? {} : { source: opts.path }),
    unknownKeyHints: RETIRED_KEYS,
  });
  warnings.push(...deprecationWarnings(raw));
  if (value.config_command !== "") {
    warnings.push(configIssue(["config_command"], "not supported by this implementation, ignored"));
  }
  return { config: value, warnings };
}

/** Reads and loads a config file; ConfigError carries the file name. */
export async function loadGitalyConfigFile(path: string): Promise<LoadedGitalyConfig> {
  let text: string;
  try {
    text = await readFile(path, "utf8");
  } catch (error) {
    throw new Error(`reading configuration ${JSON.stringify(path)}: ${(error as Error).message}`, { cause: error });
  }
  return loadGitalyConfig(text, { path });
}
