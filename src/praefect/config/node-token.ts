// A node's `token_file` ([[virtual_storage.node]], not in upstream). The file is re-read on every
// live reload, and a Secret being rewritten can be caught half-written (empty) or replaced by
// something that is not a token; such content is refused with an error naming the problem, never
// the content, so the caller keeps the token it has.
import { readFile } from "node:fs/promises";

const strictUtf8 = new TextDecoder("utf-8", { fatal: true });

// C0 controls and DEL: no token generator emits them, and a header value cannot carry most.
// biome-ignore lint/suspicious/noControlCharactersInRegex: matching control characters is the point
const CONTROL_CHARACTER = /[\u0000-\u001f\u007f]/;

/** The token in a token file's bytes (surrounding whitespace trimmed); throws when it is no token. */
export function parseNodeToken(bytes: Uint8Array): string {
  let text: string;
  try {
    text = strictUtf8.decode(bytes);
  } catch {
    throw new Error("the file is not valid UTF-8");
  }
  const token = text.trim();
  if (token === "") throw new Error("the file is empty");
  if (CONTROL_CHARACTER.test(token)) throw new Error("the file holds control characters");
  return token;
}

/** Reads and checks a node's token file; the error says which file and why, never its content. */
export async function readNodeTokenFile(path: string): Promise<string> {
  let bytes: Buffer;
  try {
    bytes = await readFile(path);
  } catch (error) {
    throw new Error(`reading token file ${JSON.stringify(path)}: ${(error as Error).message}`, { cause: error });
  }
  try {
    return parseNodeToken(bytes);
  } catch (error) {
    throw new Error(`token file ${JSON.stringify(path)} holds no token: ${(error as Error).message}`);
  }
}
