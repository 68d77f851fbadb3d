// Page tokens that upstream encodes as base64 of a JSON object. They must decode the
// same way here, since a client may carry a token from one node to another.

/** JSON as Go's encoding/json writes it: <, >, & and U+2028/9 escaped. */
export function goJson(value: unknown): string {
  return JSON.stringify(value).replace(
    /[<>&\u2028\u2029]/g,
    (c) => `\\u${c.charCodeAt(0).toString(16).padStart(4, "0")}`,
  );
}

/** Standard base64 with padding, rejecting what Go's StdEncoding rejects. */
export function decodeStdBase64(text: string): Buffer | null {
  if (text.length % 4 !== 0 || !/^[A-Za-z0-9+/]*={0,2}$/.test(text)) return null;
  const decoded = Buffer.from(text, "base64");
  // Non-canonical trailing bits are an error for Go, silently dropped by Node.
  return decoded.toString("base64") === text ? decoded : null;
}

export function encodeToken(fields: Record<string, string>): string {
  return Buffer.from(goJson(fields), "utf8").toString("base64");
}

/**
 * The string fields of a token, or null if it is not base64 of a JSON object whose
 * known fields are strings (then callers treat the token as a legacy plain value).
 */
export function decodeToken<K extends string>(token: string, keys: readonly K[]): Record<K, string> | null {
  const bytes = decodeStdBase64(token);
  if (!bytes) return null;
  let parsed: unknown;
  try {
    parsed = JSON.parse(bytes.toString("utf8"));
  } catch {
    return null;
  }
  if (parsed !== null && (typeof parsed !== "object" || Array.isArray(parsed))) return null;
  const record = (parsed ?? {}) as Record<string, unknown>;
  const out = {} as Record<K, string>;
  for (const key of keys) {
    const value = record[key];
    if (value !== undefined && value !== null && typeof value !== "string") return null;
    out[key] = typeof value === "string" ? value : "";
  }
  return out;
}
