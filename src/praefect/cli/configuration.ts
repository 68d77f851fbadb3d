// `praefect configuration validate < config.toml`: like Gitaly's, exit 0 and no output when the
// configuration is valid; otherwise exit 2 with upstream's JSON ({"errors":[{"key":[…],"message":…}]})
// on stdout. Unknown keys are warned about on stderr and do not fail validation.
import { ConfigError, formatIssue, validationOutput } from "../../shared/config/issues.js";
import { checkPraefectEnvironment } from "../config/environment.js";
import { type LoadedPraefectConfig, loadPraefectConfig } from "../config/load.js";
import { type CommandContext, CommandError, write } from "./context.js";

export const VALIDATION_ERROR_EXIT_CODE = 2;

export async function configurationValidate(args: readonly string[], ctx: CommandContext): Promise<number> {
  if (args.length > 0) throw new CommandError("invalid argument(s)");
  let loaded: LoadedPraefectConfig;
  try {
    loaded = loadPraefectConfig(ctx.stdin ?? "");
  } catch (error) {
    if (error instanceof ConfigError) {
      await write(ctx.out, validationOutput(error.errors));
      return VALIDATION_ERROR_EXIT_CODE;
    }
    await write(ctx.err, `processing input data: ${(error as Error).message}\n`);
    return 1;
  }
  for (const warning of loaded.warnings) await write(ctx.err, `warning: ${formatIssue(warning)}\n`);
  const issues = await checkPraefectEnvironment(loaded.config);
  if (issues.length > 0) {
    await write(ctx.out, validationOutput(issues));
    return VALIDATION_ERROR_EXIT_CODE;
  }
  return 0;
}
