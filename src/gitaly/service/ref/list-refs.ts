// ListRefs: references matching patterns, optionally with HEAD first and peeled tag
// targets, sorted by git and paginated with an opaque cursor (base64 JSON of the last
// ref name; a raw ref name is accepted too, as upstream does).
import { create } from "@bufbuild/protobuf";
import {
  type ListRefsRequest,
  ListRefsRequest_SortBy_Key,
  type ListRefsResponse,
  ListRefsResponse_ReferenceSchema,
  ListRefsResponseSchema,
} from "../../../gen/ref_pb.js";
import { PaginationCursorSchema, SortDirection } from "../../../gen/shared_pb.js";
import { invalidArgument, RpcError } from "../../../shared/grpc/errors.js";
import { argText, latin1 } from "../../git/objects/bytes.js";
import { openRepo } from "../../git/objects/repo-handle.js";
import { decodeToken, encodeToken } from "../commit/page-token.js";
import { asRpcError } from "../commit/streaming.js";
import type { RefDeps } from "./branches.js";
import { forEachRefLines, linePaging, pagedLines } from "./ref-lines.js";

const SORT_KEYS: Record<number, string> = {
  [ListRefsRequest_SortBy_Key.REFNAME]: "refname",
  [ListRefsRequest_SortBy_Key.CREATORDATE]: "creatordate",
  [ListRefsRequest_SortBy_Key.AUTHORDATE]: "authordate",
  [ListRefsRequest_SortBy_Key.COMMITTERDATE]: "committerdate",
};
const SORT_DIRECTIONS: Record<number, string> = {
  [SortDirection.ASCENDING]: "",
  [SortDirection.DESCENDING]: "-",
};

/** A token from upstream or from us: base64 JSON {"ref_name"}, else the raw ref name. */
export function decodeListRefsToken(token: string): string {
  const fields = decodeToken(token, ["ref_name"] as const);
  return fields && fields.ref_name !== "" ? fields.ref_name : token;
}

function validate(req: ListRefsRequest): void {
  if (req.patterns.length < 1) throw invalidArgument("patterns must have at least one entry");
  if (req.sortBy) {
    if (SORT_KEYS[req.sortBy.key] === undefined) {
      throw invalidArgument(
        `sorting key "${ListRefsRequest_SortBy_Key[req.sortBy.key] ?? req.sortBy.key}" is not supported`,
      );
    }
    if (SORT_DIRECTIONS[req.sortBy.direction] === undefined)
      throw invalidArgument("sorting direction is not supported");
  }
  for (const pattern of req.excludePatterns) {
    const p = latin1(pattern);
    if (p === "") throw invalidArgument("empty exclude pattern");
    if (p.includes("\0")) throw invalidArgument(`exclude pattern contains null byte: ${JSON.stringify(p)}`);
    if (!p.startsWith("refs/")) {
      throw invalidArgument(`exclude pattern must start with "refs/": ${JSON.stringify(argText(pattern))}`);
    }
  }
}

export async function* listRefs(
  deps: RefDeps,
  req: ListRefsRequest,
  signal?: AbortSignal,
): AsyncGenerator<ListRefsResponse> {
  const repo = openRepo(deps, req.repository, signal);
  validate(req);

  let headOid = "";
  if (req.head) {
    try {
      const { stdout } = await repo.run({ subcommand: "rev-parse", flags: ["--verify", "--quiet"], args: ["HEAD"] });
      headOid = stdout.toString("latin1").trim();
    } catch {
      // An unborn HEAD is simply not listed.
    }
  }

  const fields = ["%(refname)", "%(objectname)", ...(req.peelTags ? ["%(*objectname)"] : [])];
  const sort = (SORT_DIRECTIONS[req.sortBy?.direction ?? 0] ?? "") + (SORT_KEYS[req.sortBy?.key ?? 0] ?? "refname");
  const params = req.paginationParams;
  const token = params && params.pageToken !== "" ? decodeListRefsToken(params.pageToken) : "";
  const lines = forEachRefLines(repo, deps.git, {
    format: fields.join("%00"),
    sort,
    patterns: req.patterns.map((p) => argText(p)),
    extraFlags: req.pointingAtOids.map((oid) => ({ name: "--points-at", value: argText(oid) })),
    excludePatterns: req.excludePatterns.map((p) => argText(p)),
    ignoreCase: req.ignoreCase,
  });

  try {
    for await (const batch of pagedLines(lines, linePaging(params, token))) {
      const references = [];
      // Like upstream, HEAD rides along with the first message that lists anything.
      if (headOid !== "") {
        references.push(create(ListRefsResponse_ReferenceSchema, { name: Buffer.from("HEAD"), target: headOid }));
        headOid = "";
      }
      for (const line of batch.lines) {
        const parts = line.toString("latin1").split("\0");
        if (parts.length !== fields.length)
          throw new Error(`error parsing ref ${JSON.stringify(line.toString("utf8"))}`);
        references.push(
          create(ListRefsResponse_ReferenceSchema, {
            name: Buffer.from(parts[0] as string, "latin1"),
            target: parts[1] as string,
            peeledTarget: req.peelTags ? (parts[2] as string) : "",
          }),
        );
      }
      const response = create(ListRefsResponseSchema, { references });
      const last = references[references.length - 1];
      if (batch.hasNextPage && last) {
        const nextCursor = encodeToken({ ref_name: Buffer.from(last.name).toString("utf8") });
        response.paginationCursor = create(PaginationCursorSchema, { nextCursor });
      }
      yield response;
    }
  } catch (err) {
    throw err instanceof RpcError ? err : asRpcError(err, "listing refs");
  }
}
