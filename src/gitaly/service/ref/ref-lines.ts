// Reference listings through `git for-each-ref`, paged the way upstream's lines.Send
// pages them: skip up to and including the page token, stop after `limit` lines, and
// send at most 20 lines per message, telling the last message whether more exist.
import type { PaginationParameter } from "../../../gen/shared_pb.js";
import { invalidArgument } from "../../../shared/grpc/errors.js";
import { gitVersionAtLeast } from "../../git/command.js";
import { gitRecords } from "../../git/objects/records.js";
import type { RepoHandle } from "../../git/objects/repo-handle.js";
import { ITEMS_PER_MESSAGE } from "../commit/streaming.js";

/** `for-each-ref --exclude` arrived in git 2.42. */
const EXCLUDE_SINCE = "2.42.0";
const INT32_MAX = 2 ** 31 - 1;

export interface LinePaging {
  limit: number;
  /** Whether a line is the page token; called with an empty line first. */
  isPageToken(line: Buffer): boolean;
  /** A token that never shows up is an error (InvalidArgument). */
  pageTokenError: boolean;
}

/** upstream's buildPaginationOpts: no parameters → everything; limit 0 → nothing. */
export function linePaging(params: PaginationParameter | undefined, pageToken = params?.pageToken ?? ""): LinePaging {
  const paging: LinePaging = { limit: INT32_MAX, isPageToken: () => true, pageTokenError: false };
  if (!params) return paging;
  if (params.limit >= 0) paging.limit = params.limit;
  if (pageToken !== "") {
    const token = Buffer.from(pageToken, "utf8");
    paging.isPageToken = (line) => {
      const nul = line.indexOf(0);
      return token.equals(nul < 0 ? line : line.subarray(0, nul));
    };
    paging.pageTokenError = true;
  }
  return paging;
}

/** The error upstream's listing RPCs return for a page token that matched no line. */
export function invalidPageToken() {
  return invalidArgument("invalid page token: sending lines: could not find page token");
}

export interface LineBatch {
  lines: Buffer[];
  /** Set on the last batch when the limit cut the listing short. */
  hasNextPage: boolean;
}

/** Pages `lines`; throws invalidPageToken() as upstream does. */
export async function* pagedLines(lines: AsyncIterable<Buffer>, paging: LinePaging): AsyncGenerator<LineBatch> {
  if (paging.limit < 1) {
    if (paging.pageTokenError) throw invalidPageToken();
    return;
  }
  let pastToken = paging.isPageToken(Buffer.alloc(0));
  let processed = 0;
  let hasNextPage = false;
  let batch: Buffer[] = [];
  for await (const line of lines) {
    if (line.length === 0) break;
    if (!pastToken) {
      pastToken = paging.isPageToken(line);
      continue;
    }
    if (processed === paging.limit) {
      hasNextPage = true;
      break;
    }
    processed++;
    // Flushing before adding keeps the last line for the final batch, which knows hasNextPage.
    if (batch.length >= ITEMS_PER_MESSAGE) {
      yield { lines: batch, hasNextPage: false };
      batch = [];
    }
    batch.push(Buffer.from(line));
  }
  if (!pastToken && paging.pageTokenError) throw invalidPageToken();
  if (batch.length > 0) yield { lines: batch, hasNextPage };
}

export interface ForEachRefOptions {
  format: string;
  patterns: string[];
  sort?: string;
  extraFlags?: (string | { name: string; value: string })[];
  excludePatterns?: string[];
  ignoreCase?: boolean;
}

/**
 * The lines of `git for-each-ref`. Exclude patterns use git's own matching: passed as
 * --exclude where git has it, otherwise the excluded names are listed by a second
 * for-each-ref with the same rules and filtered out here.
 */
export async function* forEachRefLines(repo: RepoHandle, git: { version(): Promise<string> }, opts: ForEachRefOptions) {
  const flags: (string | { name: string; value: string })[] = [`--format=${opts.format}`];
  if (opts.sort) flags.push(`--sort=${opts.sort}`);
  flags.push(...(opts.extraFlags ?? []));
  if (opts.ignoreCase) flags.push("--ignore-case");
  const excludes = opts.excludePatterns ?? [];
  let excluded: Set<string> | undefined;
  if (excludes.length > 0) {
    if (gitVersionAtLeast(await git.version(), EXCLUDE_SINCE)) {
      for (const pattern of excludes) flags.push(`--exclude=${pattern}`);
    } else {
      excluded = new Set();
      const proc = repo.spawn({
        subcommand: "for-each-ref",
        flags: ["--format=%(refname)", ...(opts.ignoreCase ? ["--ignore-case"] : [])],
        args: excludes,
      });
      for await (const name of gitRecords(proc)) excluded.add(name.toString("latin1"));
    }
  }
  const proc = repo.spawn({ subcommand: "for-each-ref", flags, args: opts.patterns });
  for await (const line of gitRecords(proc)) {
    if (excluded) {
      const nul = line.indexOf(0);
      const name = (nul < 0 ? line : line.subarray(0, nul)).toString("latin1");
      if (excluded.has(name)) continue;
    }
    yield line;
  }
}
