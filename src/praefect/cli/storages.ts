// `list-storages` and `dial-nodes`: what the configuration says about the nodes, and whether they
// answer.
import { type CommandContext, CommandError, rejectPositionals, requireConfig, write } from "./context.js";
import { numberFlag, parseFlags, stringFlag } from "./flags.js";
import { pingAll, pingErrorMessage } from "./ping.js";
import { plainTable } from "./table.js";

const DEFAULT_DIAL_TIMEOUT_MS = 10_000;

/** `praefect list-storages [-virtual-storage NAME]`: VIRTUAL_STORAGE | NODE | ADDRESS. */
export async function listStorages(args: readonly string[], ctx: CommandContext): Promise<number> {
  const { values, positionals } = parseFlags(args, { "virtual-storage": { kind: "string" } });
  rejectPositionals("list-storages", positionals);
  const config = requireConfig(ctx);
  const picked = stringFlag(values, "virtual-storage");
  const header = ["VIRTUAL_STORAGE", "NODE", "ADDRESS"];
  const rowsOf = (vs: (typeof config.virtual_storage)[number]) => vs.node.map((n) => [vs.name, n.storage, n.address]);
  if (picked !== "") {
    const vs = config.virtual_storage.find((v) => v.name === picked);
    if (!vs) {
      await write(ctx.out, `No virtual storages named ${picked}.\n`);
      return 0;
    }
    await write(ctx.out, plainTable(header, rowsOf(vs)));
    return 0;
  }
  await write(ctx.out, plainTable(header, config.virtual_storage.flatMap(rowsOf)));
  return 0;
}

/** `praefect dial-nodes [-timeout DURATION]` (default 10s). */
export async function dialNodes(args: readonly string[], ctx: CommandContext): Promise<number> {
  const { values, positionals } = parseFlags(args, { timeout: { kind: "duration" } });
  rejectPositionals("dial-nodes", positionals);
  const config = requireConfig(ctx);
  const timeoutMs = numberFlag(values, "timeout") || DEFAULT_DIAL_TIMEOUT_MS;
  const unhealthy = await pingAll(config, (text) => write(ctx.out, text), { timeoutMs });
  if (unhealthy.length > 0) throw new CommandError(pingErrorMessage(unhealthy));
  return 0;
}
