#!/usr/bin/env node
// The gitaly-cluster program. Each subcommand parses its own flags (node:util
// parseArgs), so adding one is a new entry in SUBCOMMANDS:
//   gitaly-cluster up ...         a local Gitaly Cluster from a GitalyCluster manifest
//   gitaly-cluster rotate ...     rotate the auth tokens of a running local cluster
//   gitaly-cluster gateway ...    git smart HTTP in front of a Gitaly or Praefect
import { ROTATE_USAGE, runRotate } from "./cluster/rotate.js";
import { UP_USAGE } from "./cluster/usage.js";
import { GATEWAY_USAGE, runGateway } from "./gateway/cli.js";

interface Subcommand {
  summary: string;
  usage: string;
  run(argv: string[]): Promise<number>;
}

const SUBCOMMANDS: Record<string, Subcommand> = {
  up: {
    summary: "run a local Gitaly Cluster (PostgreSQL, Gitaly, Praefect, HTTP gateway) from a manifest",
    usage: UP_USAGE,
    // Loaded on use: the gateway subcommand need not load the runner (and the API schemas).
    run: async (argv) => (await import("./cluster/cli.js")).runUp(argv),
  },
  rotate: {
    summary: "rotate both auth tokens of a running local cluster, without failing a request",
    usage: ROTATE_USAGE,
    // Light to load: it imports the rotation driver and the manifest loader on use.
    run: runRotate,
  },
  gateway: {
    summary: "serve git smart HTTP (clone, fetch, push) for a Gitaly or Praefect",
    usage: GATEWAY_USAGE,
    run: runGateway,
  },
};

function usage(): string {
  const width = Math.max(...Object.keys(SUBCOMMANDS).map((k) => k.length));
  const lines = Object.entries(SUBCOMMANDS).map(([name, s]) => `  ${name.padEnd(width)}  ${s.summary}`);
  return `usage: gitaly-cluster <command> [flags]\n\ncommands:\n${lines.join("\n")}\n\nRun "gitaly-cluster <command> --help" for a command's flags.\n`;
}

export async function main(argv: string[]): Promise<number> {
  const [name, ...rest] = argv;
  if (name === undefined || name === "help" || name === "--help" || name === "-h") {
    process[name === undefined ? "stderr" : "stdout"].write(usage());
    return name === undefined ? 2 : 0;
  }
  const sub = SUBCOMMANDS[name];
  if (!sub) {
    process.stderr.write(`gitaly-cluster: unknown command ${JSON.stringify(name)}\n${usage()}`);
    return 2;
  }
  return sub.run(rest);
}

main(process.argv.slice(2)).then(
  (code) => {
    // Idle keep-alive sockets or timers must not keep a finished command alive.
    process.exit(code);
  },
  (err: unknown) => {
    process.stderr.write(`gitaly-cluster: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}\n`);
    process.exit(1);
  },
);
