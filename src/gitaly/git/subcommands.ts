// The git subcommands the server may run, and what each needs: whether it understands
// `--end-of-options`, how its positional arguments are checked, and the configuration
// it always runs with. Mirrors upstream's internal/git/gitcmd/command_description.go,
// trimmed to settings git 2.39 understands.
import { availableParallelism } from "node:os";
import { revisionError } from "./revision.js";

export interface ConfigPair {
  key: string;
  value: string;
}

export interface SubcommandDescription {
  /** Parses options with parse-options and so honours `--end-of-options`. */
  endOfOptions: boolean;
  /**
   * Custom check of positional arguments; returns an error message or null. Without it,
   * commands lacking `--end-of-options` refuse arguments that start with '-'.
   */
  validateArgs?: (args: readonly string[]) => string | null;
  /** Configuration this subcommand always gets (before per-call and admin configuration). */
  config?: () => ConfigPair[];
}

/** Hidden from clients entirely / advertised but not writable. */
const HIDDEN_REF_PREFIXES = ["refs/keep-around/", "refs/remotes/", "refs/tmp/"];
const READONLY_REF_PREFIXES = ["refs/environments/", "refs/merge-requests/", "refs/pipelines/"];

function packConfig(): ConfigPair[] {
  return [
    { key: "pack.windowMemory", value: "100m" },
    { key: "pack.writeReverseIndex", value: "true" },
    { key: "pack.threads", value: String(packThreads()) },
  ];
}

/** log2 of the CPU count, at least 1: packing must not starve concurrent RPCs of cores. */
function packThreads(): number {
  return Math.max(1, Math.floor(Math.log2(availableParallelism())));
}

function fsckConfig(prefix: "fsck" | "fetch.fsck" | "receive.fsck"): ConfigPair[] {
  return [
    { key: "transfer.fsckObjects", value: "true" },
    { key: `${prefix}.badTimezone`, value: "ignore" },
    { key: `${prefix}.missingSpaceBeforeDate`, value: "ignore" },
    { key: `${prefix}.zeroPaddedFilemode`, value: "ignore" },
  ];
}

const NO_REDIRECTS: ConfigPair = { key: "http.followRedirects", value: "false" };
// Pool repositories' refs must not leak into advertisements or connectivity checks;
// git appends the pool path to the command, hence the trailing "#".
const NO_ALTERNATE_REFS: ConfigPair = { key: "core.alternateRefsCommand", value: "exit 0 #" };

const plain: SubcommandDescription = { endOfOptions: true };
const noEndOfOptions: SubcommandDescription = { endOfOptions: false };

export const SUBCOMMANDS: ReadonlyMap<string, SubcommandDescription> = new Map<string, SubcommandDescription>([
  ["am", plain],
  ["apply", plain],
  ["archive", noEndOfOptions],
  ["blame", noEndOfOptions],
  ["bundle", { endOfOptions: true, config: packConfig }],
  ["cat-file", plain],
  ["check-attr", noEndOfOptions],
  // Hand-rolled option parser.
  ["check-ref-format", noEndOfOptions],
  [
    "clone",
    {
      endOfOptions: true,
      config: () => [
        { key: "init.templateDir", value: "" },
        NO_REDIRECTS,
        ...packConfig(),
        ...fsckConfig("fetch.fsck"),
      ],
    },
  ],
  ["commit-graph", plain],
  ["commit-tree", plain],
  ["config", plain],
  ["count-objects", plain],
  ["diff", plain],
  ["diff-tree", plain],
  ["fast-export", plain],
  [
    "fetch",
    {
      endOfOptions: true,
      config: () => [
        NO_ALTERNATE_REFS,
        // Commit graphs are written by housekeeping, not by every fetch.
        { key: "fetch.writeCommitGraph", value: "false" },
        NO_REDIRECTS,
        // Gitaly never populates submodules.
        { key: "fetch.recurseSubmodules", value: "no" },
        ...fsckConfig("fetch.fsck"),
        ...packConfig(),
      ],
    },
  ],
  ["for-each-ref", plain],
  ["format-patch", plain],
  ["fsck", { endOfOptions: true, config: () => fsckConfig("fsck") }],
  ["gc", { endOfOptions: true, config: packConfig }],
  ["grep", { endOfOptions: false, config: () => [{ key: "grep.threads", value: String(packThreads()) }] }],
  ["hash-object", plain],
  ["index-pack", noEndOfOptions],
  [
    "init",
    {
      endOfOptions: true,
      config: () => [
        // Never let a configured default branch or template directory shape new repositories.
        { key: "init.defaultBranch", value: "main" },
        { key: "init.templateDir", value: "" },
      ],
    },
  ],
  ["log", plain],
  ["ls-remote", { endOfOptions: true, config: () => [NO_REDIRECTS] }],
  ["ls-tree", plain],
  ["maintenance", plain],
  ["merge-base", plain],
  ["merge-file", plain],
  ["merge-tree", plain],
  ["mktag", plain],
  ["mktree", plain],
  ["multi-pack-index", plain],
  ["pack-objects", { endOfOptions: true, config: packConfig }],
  ["pack-refs", plain],
  ["patch-id", noEndOfOptions],
  ["prune", plain],
  ["prune-packed", plain],
  ["push", { endOfOptions: true, config: () => [NO_REDIRECTS] }],
  ["range-diff", noEndOfOptions],
  ["read-tree", plain],
  [
    "receive-pack",
    {
      endOfOptions: true,
      config: () => [
        NO_ALTERNATE_REFS,
        { key: "receive.advertisePushOptions", value: "true" },
        { key: "receive.autogc", value: "false" },
        ...[...HIDDEN_REF_PREFIXES, ...READONLY_REF_PREFIXES]
          .sort()
          .map((p) => ({ key: "receive.hideRefs", value: p })),
        ...fsckConfig("receive.fsck"),
        ...packConfig(),
      ],
    },
  ],
  // git-remote's `remove` does not know --end-of-options.
  ["remote", { endOfOptions: false, config: () => [NO_REDIRECTS] }],
  [
    "repack",
    {
      endOfOptions: true,
      config: () => [
        { key: "repack.writeBitmaps", value: "true" },
        // Only the dumb HTTP protocol needs server info, and it is not served.
        { key: "repack.updateServerInfo", value: "false" },
        ...packConfig(),
      ],
    },
  ],
  [
    "rev-list",
    {
      // Pseudo revisions (--all, --not) are options to the parser, so --end-of-options
      // would turn them into (invalid) revisions.
      endOfOptions: false,
      validateArgs: (args) => {
        for (const arg of args) {
          if (!arg.startsWith("-")) continue;
          const reason = revisionError(arg, { allowPseudoRevisions: true });
          if (reason !== null) return `validating positional argument: ${reason}`;
        }
        return null;
      },
    },
  ],
  // Without --verify, rev-parse echoes --end-of-options.
  ["rev-parse", noEndOfOptions],
  ["show", plain],
  ["show-index", plain],
  ["show-ref", plain],
  ["symbolic-ref", plain],
  ["tag", plain],
  ["unpack-objects", noEndOfOptions],
  ["update-ref", plain],
  // Takes the directory as its first argument with a hand-rolled parser.
  ["upload-archive", noEndOfOptions],
  [
    "upload-pack",
    {
      endOfOptions: true,
      config: () => [
        { key: "uploadpack.allowFilter", value: "true" },
        { key: "uploadpack.allowAnySHA1InWant", value: "true" },
        ...HIDDEN_REF_PREFIXES.map((p) => ({ key: "uploadpack.hideRefs", value: p })),
        ...packConfig(),
      ],
    },
  ],
  ["version", plain],
  ["worktree", plain],
]);
