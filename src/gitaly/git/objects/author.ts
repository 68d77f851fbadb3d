// Identity lines of commits and tags ("Name <email> 1700000000 +0100"), parsed the way
// upstream does, including its fallbacks for malformed dates.
import { create } from "@bufbuild/protobuf";
import { TimestampSchema } from "@bufbuild/protobuf/wkt";
import { type CommitAuthor, CommitAuthorSchema, SignatureType } from "../../../gen/shared_pb.js";
import { copyBytes } from "./bytes.js";

const MAX_UNIX_COMMIT_DATE = 1n << 53n;
const INT64_MAX = (1n << 63n) - 1n;
const INT64_MIN = -(1n << 63n);
/** What upstream reports for an unparsable date: Go's largest representable time. */
export const FALLBACK_DATE_SECONDS = (1n << 63n) - 62135596801n;

/** Seconds since the epoch from a commit's date field; out of range or garbage → the fallback. */
export function parseDateSeconds(text: string): bigint {
  if (!/^[+-]?\d+$/.test(text)) return FALLBACK_DATE_SECONDS;
  const value = BigInt(text);
  if (value > INT64_MAX || value < INT64_MIN) return FALLBACK_DATE_SECONDS;
  if (value > MAX_UNIX_COMMIT_DATE || value < 0n) return FALLBACK_DATE_SECONDS;
  return value;
}

function isAsciiSpace(b: number): boolean {
  return b === 0x20 || (b >= 0x09 && b <= 0x0d);
}

function fields(bytes: Uint8Array): Uint8Array[] {
  const out: Uint8Array[] = [];
  let start = -1;
  for (let i = 0; i <= bytes.length; i++) {
    const space = i === bytes.length || isAsciiSpace(bytes[i] as number);
    if (space && start >= 0) {
      out.push(bytes.subarray(start, i));
      start = -1;
    } else if (!space && start < 0) {
      start = i;
    }
  }
  return out;
}

/** The value of an `author`, `committer` or `tagger` header (without the key). */
export function parseAuthor(value: Uint8Array): CommitAuthor {
  const author = create(CommitAuthorSchema);
  const lt = value.indexOf(0x3c /* < */);
  let name = lt < 0 ? value : value.subarray(0, lt);
  if (name.length > 0 && name[name.length - 1] === 0x20) name = name.subarray(0, name.length - 1);
  author.name = copyBytes(name);
  if (lt < 0) return author;

  const rest = value.subarray(lt + 1);
  const gt = rest.indexOf(0x3e /* > */);
  if (gt < 0) return author;
  author.email = copyBytes(rest.subarray(0, gt));

  const parts = fields(rest.subarray(gt + 1));
  const seconds = parts[0];
  if (!seconds) return author;
  author.date = create(TimestampSchema, { seconds: parseDateSeconds(Buffer.from(seconds).toString("latin1")) });
  if (parts.length === 2) author.timezone = copyBytes(parts[1] as Uint8Array);
  return author;
}

/** The signature type announced by the first line of an armored signature. */
export function detectSignatureType(line: string): SignatureType {
  switch (line.endsWith("\n") ? line.slice(0, -1) : line) {
    case "-----BEGIN SIGNED MESSAGE-----":
      return SignatureType.X509;
    case "-----BEGIN PGP MESSAGE-----":
    case "-----BEGIN PGP SIGNATURE-----":
      return SignatureType.PGP;
    case "-----BEGIN SSH SIGNATURE-----":
      return SignatureType.SSH;
    default:
      return SignatureType.NONE;
  }
}
