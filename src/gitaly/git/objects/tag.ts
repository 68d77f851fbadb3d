// Raw annotated tag objects → Tag (without the tagged commit, which needs another read).
import { create } from "@bufbuild/protobuf";
import { type Tag, TagSchema } from "../../../gen/shared_pb.js";
import { detectSignatureType, parseAuthor } from "./author.js";
import { chompNewline, copyBytes, trimRightBytes } from "./bytes.js";
import { MAX_COMMIT_OR_TAG_MESSAGE_SIZE } from "./commit.js";

export interface ParsedTag {
  tag: Tag;
  /** The `object` header: what the tag points at. */
  taggedOid: string;
  /** The `type` header: "commit", "tag", "tree" or "blob". */
  taggedType: string;
}

const SIGNATURE_START = Buffer.from("-----BEGIN");

/**
 * Parses the content of the tag object `oid`. `name`, when given, wins over the name
 * recorded in the object: a ref may be called differently from the tag it points at.
 */
export function parseTag(oid: string, data: Uint8Array, name?: Uint8Array): ParsedTag {
  const tag = create(TagSchema, { id: oid, name: name ? copyBytes(name) : new Uint8Array() });
  let taggedOid = "";
  let taggedType = "";
  let message: Uint8Array | undefined;

  let pos = 0;
  while (pos < data.length) {
    const nl = data.indexOf(0x0a, pos);
    const end = nl < 0 ? data.length : nl + 1;
    const line = data.subarray(pos, end);
    pos = end;
    if (line.length === 1 && line[0] === 0x0a) {
      message = data.subarray(pos);
      break;
    }
    const content = chompNewline(line);
    const sp = content.indexOf(0x20);
    if (sp < 0) continue;
    const key = Buffer.from(content.subarray(0, sp)).toString("latin1");
    const value = content.subarray(sp + 1);
    switch (key) {
      case "object":
        taggedOid = Buffer.from(value).toString("latin1");
        break;
      case "type":
        taggedType = Buffer.from(value).toString("latin1");
        break;
      case "tag":
        if (tag.name.length === 0) tag.name = copyBytes(value);
        break;
      case "tagger":
        tag.tagger = parseAuthor(value);
        break;
    }
  }

  if (message !== undefined) {
    tag.message = copyBytes(message);
    tag.messageSize = BigInt(message.length);
    // Tags carry their signature at the end of the message.
    const start = Buffer.from(message.buffer, message.byteOffset, message.byteLength).indexOf(SIGNATURE_START);
    if (start > 0) {
      const signature = message.subarray(start);
      const firstLineEnd = signature.indexOf(0x0a);
      if (firstLineEnd > 0) {
        tag.signatureType = detectSignatureType(Buffer.from(signature.subarray(0, firstLineEnd)).toString("latin1"));
      }
    }
  }
  return { tag, taggedOid, taggedType };
}

/**
 * What FindTag and FindAllTags send: trailing newlines removed, message_size the length
 * after that, and the message itself cut at 10 KiB (so a size larger than the message
 * tells the client it was truncated).
 */
export function trimTagMessage(tag: Tag): void {
  const trimmed = trimRightBytes(tag.message, "\n");
  tag.messageSize = BigInt(trimmed.length);
  tag.message = copyBytes(trimmed.subarray(0, MAX_COMMIT_OR_TAG_MESSAGE_SIZE));
}
