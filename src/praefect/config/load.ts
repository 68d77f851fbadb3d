// Loading Praefect's config.toml: pure text → validated config plus warnings. Nothing here touches
// the disk except loadPraefectConfigFile's single read; on-disk checks live in environment.ts.
import { readFile } from "node:fs/promises";
import { ConfigError, type ConfigWarning, configIssue } from "../../shared/config/issues.js";
import { parseTomlConfig, valueAt } from "../../shared/config/toml.js";
import { readNodeTokenFile } from "./node-token.js";
import { type PraefectConfig, praefectConfigSchema } from "./schema.js";

export { ConfigError, type ConfigIssue, type ConfigWarning } from "../../shared/config/issues.js";

export interface LoadedPraefectConfig {
  config: PraefectConfig;
  warnings: ConfigWarning[];
}

function usageWarnings(raw: unknown, config: PraefectConfig): ConfigWarning[] {
  const warnings: ConfigWarning[] = [];
  for (const key of ["host_no_proxy", "port_no_proxy"] as const) {
    if (valueAt(raw, ["database", key]) !== undefined) {
      const replacement = key === "host_no_proxy" ? "host" : "port";
      warnings.push(configIssue(["database", key], `deprecated, use database.session_pooled.${replacement} instead`));
    }
  }
  const strategy = valueAt(raw, ["failover", "election_strategy"]);
  if (typeof strategy === "string" && strategy !== "per_repository") {
    warnings.push(
      configIssue(
        ["failover", "election_strategy"],
        `${JSON.stringify(strategy)} is ignored: the per_repository election strategy is used`,
      ),
    );
  }
  if (config.memory_queue_enabled) {
    warnings.push(configIssue(["memory_queue_enabled"], "not supported by this implementation, ignored"));
  }
  if (config.config_command !== "") {
    warnings.push(configIssue(["config_command"], "not supported by this implementation, ignored"));
  }
  return warnings;
}

/**
 * Parses and validates config.toml text. Throws ConfigError (`.errors`: every problem, each with
 * its key; problems of the whole file first, as upstream lists them) for a syntax error or invalid
 * values; unknown and deprecated keys come back as warnings.
 */
export function loadPraefectConfig(tomlText: string, opts: { path?: string } = {}): LoadedPraefectConfig {
  let parsed: ReturnType<typeof parseTomlConfig<typeof praefectConfigSchema>>;
  try {
    parsed = parseTomlConfig(praefectConfigSchema, tomlText, opts.path === undefined ? {} : { source: opts.path });
  } catch (error) {
    if (error instanceof ConfigError) {
      const fileLevel = error.errors.filter((e) => e.path.length === 0);
      const keyed = error.errors.filter((e) => e.path.length > 0);
      throw new ConfigError([...fileLevel, ...keyed], error.source);
    }
    throw error;
  }
  const { value, raw, warnings } = parsed;
  warnings.push(...usageWarnings(raw, value));
  return { config: value, warnings };
}

/** Reads and loads a config file; ConfigError carries the file name. */
export async function loadPraefectConfigFile(path: string): Promise<LoadedPraefectConfig> {
  let text: string;
  try {
    text = await readFile(path, "utf8");
  } catch (error) {
    throw new Error(`reading configuration ${JSON.stringify(path)}: ${(error as Error).message}`, { cause: error });
  }
  const loaded = loadPraefectConfig(text, { path });
  await resolveNodeTokenFiles(loaded.config);
  return loaded;
}

/**
 * Fills each node's `token` from its `token_file` (trimmed, like [auth] token_file). An empty file
 * or one that holds no token is an error: a token_file is configured to be used, and a reload must
 * not take a half-written Secret for "no authentication".
 */
export async function resolveNodeTokenFiles(config: PraefectConfig): Promise<void> {
  for (const [v, vs] of config.virtual_storage.entries()) {
    for (const [n, node] of vs.node.entries()) {
      if (node.token_file === "") continue;
      try {
        node.token = await readNodeTokenFile(node.token_file);
      } catch (error) {
        throw new ConfigError([configIssue(["virtual_storage", v, "node", n, "token_file"], (error as Error).message)]);
      }
    }
  }
}
