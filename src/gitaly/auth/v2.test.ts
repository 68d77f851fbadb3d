import { describe, expect, it } from "vitest";
import { v2Signature, v2Token } from "../../shared/auth/v2-token.js";
import { Code } from "../../shared/grpc/errors.js";
import { type AuthCheck, authStatus, checkAuthorization } from "./v2.js";

const secret = "foo";
const T = 1535671600; // upstream's target time in auth/extract_test.go
const at = (seconds: number, ms = 0) => new Date(seconds * 1000 + ms);
const tokenFor = (ts: string, key = secret) => `v2.${v2Signature(key, ts).toString("hex")}.${ts}`;

type Expected = "ok" | "unauthenticated" | string;

function summary(check: AuthCheck): Expected {
  if (check.kind === "ok") return "ok";
  if (check.kind === "unauthenticated") {
    expect(check.code).toBe(Code.UNAUTHENTICATED);
    expect(check.message).toBe("authentication required");
    return "unauthenticated";
  }
  expect(check.code).toBe(Code.PERMISSION_DENIED);
  return check.message;
}

describe("checkAuthorization", () => {
  // Upstream's own vectors (secret "foo", server time 1535671600).
  const upstream: [string, string, Expected][] = [
    [
      "future time within threshold",
      "v2.3346cb25ecdb928defd368e7390522a86764bbdf1e8b21aaef27c4c23ec9c899.1535671615",
      "ok",
    ],
    [
      "past time within threshold",
      "v2.b77158328e80be2984eaf08788419d25f3484eae484aec1297af6bdf1a456610.1535671585",
      "ok",
    ],
    [
      "invalid secret",
      "v2.52a3b9016f46853c225c72b87617ac27109bba8a3068002069ab90e28253a911.1535671585",
      "permission denied: wrong hmac signature",
    ],
    [
      "too far in the future",
      "v2.ab9e7315aeecf6815fc0df585370157814131acab376f41797ad4ebc4d9a823c.1535671631",
      "permission denied: token's validity window is in future",
    ],
    [
      "too far in the past",
      "v2.f805bc69ca3aedd99e814b3fb1fc1e6a1094191691480b168a20fad7c2d24557.1535671569",
      "permission denied: token has expired",
    ],
    [
      "mismatching signed and clear message",
      "v2.319b96a3194c1cb2a2e6f1386161aca1c4cda13257fa9df8a328ab6769649bb0.1535671599",
      "permission denied: wrong hmac signature",
    ],
    [
      "invalid version",
      "v3.6fec98e8fe494284ce545c4b421799f02b9718b0eadfc3772d027e1ac5d6d569.1535671601",
      "permission denied: invalid token version",
    ],
    ["invalid token format", "foo.bar", "unauthenticated"],
    ["empty token", "", "unauthenticated"],
  ];
  it.each(upstream)("upstream vector: %s", (_desc, token, expected) => {
    expect(summary(checkAuthorization(`Bearer ${token}`, secret, at(T)))).toBe(expected);
  });

  // The window is inclusive on both ends and compared at the server's sub-second precision.
  const window: [string, number, number, Expected][] = [
    ["29 s old", T - 29, 0, "ok"],
    ["exactly 30 s old", T - 30, 0, "ok"],
    ["30 s old plus 1 ms", T - 30, 1, "permission denied: token has expired"],
    ["31 s old", T - 31, 0, "permission denied: token has expired"],
    ["29 s in future", T + 29, 0, "ok"],
    ["exactly 30 s in future", T + 30, 0, "ok"],
    ["30 s in future minus 1 ms", T + 30, -1, "permission denied: token's validity window is in future"],
    ["31 s in future", T + 31, 0, "permission denied: token's validity window is in future"],
  ];
  it.each(window)("window: %s", (_desc, ts, nowOffsetMs, expected) => {
    const header = `Bearer ${tokenFor(String(ts))}`;
    expect(summary(checkAuthorization(header, secret, at(T, nowOffsetMs)))).toBe(expected);
  });

  const malformed: [string, string | undefined, Expected][] = [
    ["missing header", undefined, "unauthenticated"],
    ["no scheme separator", tokenFor(String(T)), "unauthenticated"],
    ["other scheme", `Basic ${tokenFor(String(T))}`, "unauthenticated"],
    ["only two parts (v1-style)", "Bearer v1.Zm9v", "unauthenticated"],
    ["signature not hex", `Bearer v2.zz.${T}`, "unauthenticated"],
    ["signature of odd length", `Bearer v2.abc.${T}`, "unauthenticated"],
    [
      "v1 with a hex signature",
      `Bearer v1.${v2Signature(secret, String(T)).toString("hex")}.${T}`,
      "permission denied: invalid token version",
    ],
    ["empty signature", `Bearer v2..${T}`, "permission denied: wrong hmac signature"],
    ["wrong secret", `Bearer ${tokenFor(String(T), "bar")}`, "permission denied: wrong hmac signature"],
  ];
  it.each(malformed)("malformed: %s", (_desc, header, expected) => {
    expect(summary(checkAuthorization(header, secret, at(T)))).toBe(expected);
  });

  it("matches the scheme case-insensitively, like go-grpc-middleware", () => {
    for (const scheme of ["Bearer", "bearer", "BEARER", "bEaReR"]) {
      expect(checkAuthorization(`${scheme} ${tokenFor(String(T))}`, secret, at(T)).kind).toBe("ok");
    }
  });

  it("treats everything after the first space as the token", () => {
    expect(summary(checkAuthorization(`Bearer  ${tokenFor(String(T))}`, secret, at(T)))).toBe(
      "permission denied: invalid token version",
    );
  });

  it("accepts upper-case hex signatures, as Go's hex decoder does", () => {
    const [v, sig, ts] = tokenFor(String(T)).split(".");
    expect(checkAuthorization(`Bearer ${v}.${sig?.toUpperCase()}.${ts}`, secret, at(T)).kind).toBe("ok");
  });

  it("verifies the signature before parsing the timestamp, and reports Go's parse error", () => {
    expect(summary(checkAuthorization(`Bearer ${tokenFor("abc")}`, secret, at(T)))).toBe(
      'permission denied: cannot parse timestamp: strconv.ParseInt: parsing "abc": invalid syntax',
    );
    expect(summary(checkAuthorization(`Bearer ${tokenFor("99999999999999999999")}`, secret, at(T)))).toBe(
      'permission denied: cannot parse timestamp: strconv.ParseInt: parsing "99999999999999999999": value out of range',
    );
    // An unsigned garbage timestamp never gets as far as the parser.
    expect(summary(checkAuthorization(`Bearer v2.${"00".repeat(32)}.abc`, secret, at(T)))).toBe(
      "permission denied: wrong hmac signature",
    );
    // The message may contain dots: only the first two separate the parts.
    expect(summary(checkAuthorization(`Bearer ${tokenFor("1.5")}`, secret, at(T)))).toBe(
      'permission denied: cannot parse timestamp: strconv.ParseInt: parsing "1.5": invalid syntax',
    );
  });

  it("accepts a signed '+' prefixed timestamp like strconv.ParseInt", () => {
    expect(checkAuthorization(`Bearer ${tokenFor(`+${T}`)}`, secret, at(T)).kind).toBe("ok");
  });

  it("flags which denials upstream counts as v2 errors", () => {
    const version = checkAuthorization(`Bearer v3.${"00".repeat(32)}.${T}`, secret, at(T));
    const hmac = checkAuthorization(`Bearer ${tokenFor(String(T), "bar")}`, secret, at(T));
    expect(version.kind === "denied" && version.countedAsV2Error).toBe(false);
    expect(hmac.kind === "denied" && hmac.countedAsV2Error).toBe(true);
  });

  it("refuses to check against an empty secret", () => {
    const check = checkAuthorization(`Bearer ${v2Token("", at(T))}`, "", at(T));
    expect(check).toMatchObject({ kind: "unauthenticated", message: "secret must not be empty" });
  });
});

describe("authStatus", () => {
  it("labels outcomes like upstream", () => {
    const ok = checkAuthorization(`Bearer ${tokenFor(String(T))}`, secret, at(T));
    const unauth = checkAuthorization(undefined, secret, at(T));
    const deny = checkAuthorization(`Bearer ${tokenFor(String(T), "bar")}`, secret, at(T));
    expect(authStatus(ok, false)).toBe("ok");
    expect(authStatus(ok, true)).toBe("would be ok");
    expect(authStatus(unauth, false)).toBe("unauthenticated");
    expect(authStatus(unauth, true)).toBe("unauthenticated");
    expect(authStatus(deny, true)).toBe("denied");
  });
});
