// `gitaly-cluster gateway`: parses its flags, runs the gateway until SIGTERM/SIGINT.
import { parseArgs } from "node:util";
import { createLogger, type LogLevel } from "../../shared/logging.js";
import { startGateway } from "./gateway.js";

export const GATEWAY_USAGE = `usage: gitaly-cluster gateway --listen HOST:PORT --upstream ADDRESS --token-file FILE
                              [--storage NAME] [--create-on-push]
                              [--tls-ca-file FILE] [--tls-server-name NAME] [--log-level LEVEL]

Serves git smart HTTP (clone, fetch, push) for the repositories of one Gitaly or
Praefect, the way GitLab Workhorse does:
  http://HOST:PORT/<relative path>.git  ->  repository <relative path>.git in storage NAME

  --listen HOST:PORT      address to listen on (port 0 picks a free one)
  --upstream ADDRESS      tcp://host:port, tls://host:port or unix:/path of Gitaly or Praefect
  --token-file FILE       the upstream's auth token; re-read when the file changes
  --storage NAME          storage of every repository (default: default)
  --create-on-push        create a missing repository when a client starts a push to it
  --tls-ca-file FILE      CA certificate(s) to verify a tls:// upstream
  --tls-server-name NAME  name to verify in the upstream's certificate
  --log-level LEVEL       debug, info, warn or error (default: info)
`;

/** Splits "host:port" or "[v6]:port". */
export function parseListen(value: string): { host: string; port: number } {
  const m = /^(?:\[([^\]]+)\]|([^:]+)):(\d{1,5})$/.exec(value);
  const port = m ? Number(m[3]) : Number.NaN;
  const host = m ? (m[1] ?? m[2]) : undefined;
  if (!host || !(port >= 0 && port < 65536)) throw new Error(`--listen ${JSON.stringify(value)}: want HOST:PORT`);
  return { host, port };
}

const LOG_LEVELS: readonly LogLevel[] = ["debug", "info", "warn", "error"];

export async function runGateway(argv: string[]): Promise<number> {
  let values: ReturnType<typeof parse>["values"];
  try {
    values = parse(argv).values;
  } catch (err) {
    process.stderr.write(`gitaly-cluster gateway: ${(err as Error).message}\n${GATEWAY_USAGE}`);
    return 2;
  }
  if (values.help) {
    process.stdout.write(GATEWAY_USAGE);
    return 0;
  }
  const missing = (["listen", "upstream", "token-file"] as const).filter((k) => !values[k]);
  if (missing.length > 0) {
    process.stderr.write(
      `gitaly-cluster gateway: missing ${missing.map((k) => `--${k}`).join(", ")}\n${GATEWAY_USAGE}`,
    );
    return 2;
  }
  const level = (values["log-level"] ?? "info") as LogLevel;
  if (!LOG_LEVELS.includes(level)) {
    process.stderr.write(`gitaly-cluster gateway: --log-level must be one of ${LOG_LEVELS.join(", ")}\n`);
    return 2;
  }
  let listen: { host: string; port: number };
  try {
    listen = parseListen(values.listen as string);
  } catch (err) {
    process.stderr.write(`gitaly-cluster gateway: ${(err as Error).message}\n`);
    return 2;
  }
  const logger = createLogger({ component: "gateway", level });
  const gateway = await startGateway({
    ...listen,
    upstream: values.upstream as string,
    tokenFile: values["token-file"] as string,
    storage: values.storage ?? "default",
    createOnPush: values["create-on-push"] ?? false,
    ...(values["tls-ca-file"] ? { tlsCaFile: values["tls-ca-file"] } : {}),
    ...(values["tls-server-name"] ? { tlsServerName: values["tls-server-name"] } : {}),
    logger,
  });
  return new Promise<number>((resolve) => {
    let stopping = false;
    const stop = (signal: string) => {
      if (stopping) return;
      stopping = true;
      logger.info({ signal }, "shutting down");
      gateway.close().then(
        () => {
          logger.flush();
          resolve(0);
        },
        (err: unknown) => {
          logger.error({ err }, "shutdown failed");
          resolve(1);
        },
      );
    };
    process.on("SIGTERM", () => stop("SIGTERM"));
    process.on("SIGINT", () => stop("SIGINT"));
  });
}

function parse(argv: string[]) {
  return parseArgs({
    args: argv,
    strict: true,
    allowPositionals: false,
    options: {
      listen: { type: "string" },
      upstream: { type: "string" },
      "token-file": { type: "string" },
      storage: { type: "string" },
      "create-on-push": { type: "boolean" },
      "tls-ca-file": { type: "string" },
      "tls-server-name": { type: "string" },
      "log-level": { type: "string" },
      help: { type: "boolean", short: "h" },
    },
  });
}
