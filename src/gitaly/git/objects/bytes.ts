// Byte-exact text handling. Paths, ref names and revisions arrive as protobuf `bytes`
// and need not be UTF-8; holding them as latin1 strings keeps every byte (one char per
// byte) while still allowing ordinary string operations.

/** The bytes as a latin1 string: one char per byte, reversible with `fromLatin1`. */
export function latin1(bytes: Uint8Array): string {
  return Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength).toString("latin1");
}

/**
 * Bytes as a command-line argument. Arguments reach git UTF-8 encoded, so bytes that are
 * not UTF-8 cannot be passed exactly; clients send UTF-8 in practice.
 */
export function argText(bytes: Uint8Array): string {
  return Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength).toString("utf8");
}

/** The bytes a latin1 string stands for. */
export function fromLatin1(text: string): Buffer {
  return Buffer.from(text, "latin1");
}

/** A copy that does not keep a large buffer (e.g. a whole object) alive. */
export function copyBytes(bytes: Uint8Array): Uint8Array {
  return Uint8Array.prototype.slice.call(bytes);
}

/** `bytes` without any trailing bytes from `set` (Go's bytes.TrimRight). */
export function trimRightBytes(bytes: Uint8Array, set: string): Uint8Array {
  let end = bytes.length;
  while (end > 0 && set.includes(String.fromCharCode(bytes[end - 1] as number))) end--;
  return bytes.subarray(0, end);
}

/** `bytes` without one trailing newline. */
export function chompNewline(bytes: Uint8Array): Uint8Array {
  return bytes.length > 0 && bytes[bytes.length - 1] === 0x0a ? bytes.subarray(0, bytes.length - 1) : bytes;
}

/**
 * Go's path.Clean for slash-separated paths: removes `.` elements, empty elements and
 * `..` after a real element; "" becomes ".".
 */
export function cleanPath(path: string): string {
  if (path === "") return ".";
  const rooted = path.startsWith("/");
  const out: string[] = [];
  for (const part of path.split("/")) {
    if (part === "" || part === ".") continue;
    if (part === "..") {
      if (out.length > 0 && out[out.length - 1] !== "..") out.pop();
      else if (!rooted) out.push("..");
      continue;
    }
    out.push(part);
  }
  const joined = out.join("/");
  if (rooted) return `/${joined}`;
  return joined === "" ? "." : joined;
}

/** Go's path.Dir: everything before the last slash, cleaned. */
export function dirPath(path: string): string {
  return cleanPath(path.slice(0, path.lastIndexOf("/") + 1));
}

/** Go's filepath.Join: the non-empty elements joined with "/" and cleaned; "" if all are empty. */
export function joinPath(...elements: string[]): string {
  const parts = elements.filter((e) => e !== "");
  return parts.length === 0 ? "" : cleanPath(parts.join("/"));
}
