// Raw commit objects → GitCommit, with upstream's rules: headers are read until the
// first signature (anything after it up to the blank line is signed payload that git
// ignores), the subject is the body's first line, and the body is cut at 10 KiB while
// body_size keeps the full length.
import { create } from "@bufbuild/protobuf";
import { type GitCommit, GitCommitSchema } from "../../../gen/shared_pb.js";
import { detectSignatureType, parseAuthor } from "./author.js";
import { chompNewline, copyBytes, trimRightBytes } from "./bytes.js";

/** Upstream's helper.MaxCommitOrTagMessageSize. */
export const MAX_COMMIT_OR_TAG_MESSAGE_SIZE = 10 * 1024;

const SIGNATURE_HEADERS = new Set(["gpgsig", "gpgsig-sha256"]);

function isBlankLine(line: Uint8Array): boolean {
  return line.length === 1 && line[0] === 0x0a;
}

/** The header key of a line ("parent" in "parent <oid>\n"), or null without a space. */
function headerKey(line: Uint8Array): { key: string; value: Uint8Array } | null {
  const sp = line.indexOf(0x20);
  if (sp < 0) return null;
  return { key: Buffer.from(line.subarray(0, sp)).toString("latin1"), value: chompNewline(line.subarray(sp + 1)) };
}

/** The first line of a message, without trailing CR/LF. */
export function subjectFromBody(body: Uint8Array): Uint8Array {
  const nl = body.indexOf(0x0a);
  return trimRightBytes(nl < 0 ? body : body.subarray(0, nl), "\r\n");
}

/** Parses the content of the commit object `oid`. */
export function parseCommit(oid: string, data: Uint8Array): GitCommit {
  const commit = create(GitCommitSchema, { id: oid });
  let state: "header" | "signature" | "unexpected" = "header";
  let body: Uint8Array | undefined;

  let pos = 0;
  while (pos < data.length) {
    const nl = data.indexOf(0x0a, pos);
    const end = nl < 0 ? data.length : nl + 1;
    const line = data.subarray(pos, end);
    pos = end;

    if (isBlankLine(line)) {
      body = data.subarray(pos);
      break;
    }

    if (state === "header") {
      const header = headerKey(line);
      if (!header) continue;
      const text = () => Buffer.from(header.value).toString("latin1");
      switch (header.key) {
        case "parent":
          commit.parentIds.push(text());
          break;
        case "author":
          commit.author = parseAuthor(header.value);
          break;
        case "committer":
          commit.committer = parseAuthor(header.value);
          break;
        case "tree":
          commit.treeId = text();
          break;
        case "encoding":
          commit.encoding = Buffer.from(header.value).toString("utf8");
          break;
        default:
          if (SIGNATURE_HEADERS.has(header.key)) {
            // Git only honours the first signature, so only its type is reported.
            commit.signatureType = detectSignatureType(text());
            state = "signature";
          }
      }
    } else if (state === "signature") {
      // Continuation lines of the signature start with a space; a further signature
      // header keeps us here; anything else ends the parsed headers.
      if (line[0] === 0x20) continue;
      const header = headerKey(line);
      if (header && SIGNATURE_HEADERS.has(header.key)) continue;
      state = "unexpected";
    }
  }

  if (body && body.length > 0) {
    commit.subject = copyBytes(subjectFromBody(body));
    commit.bodySize = BigInt(body.length);
    commit.body = copyBytes(body.subarray(0, MAX_COMMIT_OR_TAG_MESSAGE_SIZE));
  }
  return commit;
}
