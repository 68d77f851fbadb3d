// Ports of a local cluster. The ones a user types (the gateway's, Praefect's) are fixed and
// must be free, or the run stops before starting anything; internal ones are the last run's
// when still free (stable metrics URLs and Praefect names), else whatever the kernel offers.
import { createServer } from "node:net";
import { freePort } from "../../shared/net.js";
import { LOOPBACK } from "./plan.js";

/** Whether 127.0.0.1:`port` can be listened on right now. */
export function isPortFree(port: number, host = LOOPBACK): Promise<boolean> {
  return new Promise((resolve) => {
    const srv = createServer();
    srv.unref();
    srv.once("error", () => resolve(false));
    srv.listen({ port, host, exclusive: true }, () => srv.close(() => resolve(true)));
  });
}

export class PortInUseError extends Error {
  constructor(
    readonly port: number,
    readonly flag: string,
  ) {
    super(`${LOOPBACK}:${port} is already in use; pick another port with ${flag} (0 picks a free one)`);
    this.name = "PortInUseError";
  }
}

/** Throws PortInUseError naming `flag` when `port` (not 0) is taken. */
export async function requireFreePort(port: number, flag: string): Promise<void> {
  if (port !== 0 && !(await isPortFree(port))) throw new PortInUseError(port, flag);
}

export interface AssignPortsOptions {
  /** Listener name → port the user asked for (0 = any). */
  fixed?: Record<string, { port: number; flag: string }>;
  /** Listener name → port it had last time. */
  remembered?: Record<string, number>;
  /** Ports nobody else may get (the gateway's, PostgreSQL's). */
  reserved?: Iterable<number>;
}

/** A distinct port for each listener name. */
export async function assignPorts(
  names: readonly string[],
  options: AssignPortsOptions = {},
): Promise<Record<string, number>> {
  const used = new Set<number>(options.reserved ?? []);
  const out: Record<string, number> = {};
  const fixed = options.fixed ?? {};
  for (const name of names) {
    const want = fixed[name];
    if (want && want.port !== 0) {
      if (used.has(want.port)) throw new Error(`${want.flag} ${want.port} is also used by another listener`);
      await requireFreePort(want.port, want.flag);
      used.add(want.port);
      out[name] = want.port;
    }
  }
  for (const name of names) {
    if (out[name] !== undefined) continue;
    const last = options.remembered?.[name];
    let port = last !== undefined && !used.has(last) && (await isPortFree(last)) ? last : undefined;
    while (port === undefined) {
      const candidate = await freePort();
      if (!used.has(candidate)) port = candidate;
    }
    used.add(port);
    out[name] = port;
  }
  return out;
}
