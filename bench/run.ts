// One command for the benchmarks (see bench/README.md):
//   node bench/run.ts [all|clone|reads|praefect] [--runs N] [--commits N] [--blob-kib N]
//                     [--concurrency N] [--requests N] [--max-seconds N] [--reads N] [--cpu-prof]
//                     [--stream-window-bytes N]
// `all` is clone and reads; praefect (PostgreSQL, 3 Gitaly, Praefect) runs only when named.
// Runs against the build in dist/ (build first), writes bench/results/<name>.json and
// prints one summary line per benchmark.
import { parseArgs } from "node:util";
import type * as Clone from "./clone.js";
import type * as Praefect from "./praefect.js";
import type * as Reads from "./reads.js";
import type * as Support from "./support.js";

const load = async <T>(file: string): Promise<T> => (await import(new URL(file, import.meta.url).href)) as T;

function positiveInt(name: string, value: string | undefined): number {
  const n = Number(value);
  if (!Number.isInteger(n) || n < 1) throw new Error(`--${name} must be a positive integer, got ${value}`);
  return n;
}

async function main(): Promise<void> {
  const { values, positionals } = parseArgs({
    allowPositionals: true,
    options: {
      runs: { type: "string", default: "3" },
      commits: { type: "string", default: "110" },
      "blob-kib": { type: "string", default: "1024" },
      concurrency: { type: "string", default: "10" },
      requests: { type: "string", default: "5000" },
      warmup: { type: "string", default: "300" },
      "max-seconds": { type: "string", default: "20" },
      reads: { type: "string", default: "2000" },
      "cpu-prof": { type: "boolean", default: false },
      "stream-window-bytes": { type: "string" },
      quiet: { type: "boolean", default: false },
    },
  });
  const which = positionals[0] ?? "all";
  if (!["all", "clone", "reads", "praefect"].includes(which)) {
    throw new Error(`unknown benchmark ${JSON.stringify(which)}: want all, clone, reads or praefect`);
  }
  const log = (msg: string) => {
    if (!values.quiet) process.stderr.write(`  ${msg}\n`);
  };
  const support = await load<typeof Support>("./support.ts");
  const repo = {
    commits: positiveInt("commits", values.commits),
    blobKiB: positiveInt("blob-kib", values["blob-kib"]),
  };

  if (which === "all" || which === "clone") {
    const clone = await load<typeof Clone>("./clone.ts");
    const result = await clone.runCloneBench({ ...repo, runs: positiveInt("runs", values.runs), log });
    const file = support.writeResult("clone", result);
    process.stdout.write(`${clone.reportClone(result)} -> ${file}\n`);
  }
  if (which === "all" || which === "reads") {
    const reads = await load<typeof Reads>("./reads.ts");
    const result = await reads.runReadsBench({
      ...repo,
      concurrency: positiveInt("concurrency", values.concurrency),
      requests: positiveInt("requests", values.requests),
      warmup: positiveInt("warmup", values.warmup),
      maxSeconds: positiveInt("max-seconds", values["max-seconds"]),
      log,
    });
    const file = support.writeResult("reads", result);
    process.stdout.write(`reads: ${reads.reportReads(result)} -> ${file}\n`);
  }
  if (which === "praefect") {
    const praefect = await load<typeof Praefect>("./praefect.ts");
    const result = await praefect.runPraefectBench({
      ...repo,
      runs: positiveInt("runs", values.runs),
      reads: positiveInt("reads", values.reads),
      concurrency: positiveInt("concurrency", values.concurrency),
      cpuProf: values["cpu-prof"] ?? false,
      ...(values["stream-window-bytes"] === undefined
        ? {}
        : { streamWindowBytes: positiveInt("stream-window-bytes", values["stream-window-bytes"]) }),
      log,
    });
    const file = support.writeResult("praefect", result);
    process.stdout.write(`${praefect.reportPraefect(result)} -> ${file}\n`);
  }
}

main().then(
  () => process.exit(0),
  (err: unknown) => {
    process.stderr.write(`bench: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}\n`);
    process.exit(1);
  },
);
