import { createHmac } from "node:crypto";
import { describe, expect, it } from "vitest";
import { authMetadata, bearerToken, v2Signature, v2Token } from "./v2-token.js";

describe("v2 token creation", () => {
  it("matches upstream's known-good tokens (auth/extract_test.go vectors, secret 'foo')", () => {
    expect(v2Token("foo", new Date(1535671615_000))).toBe(
      "v2.3346cb25ecdb928defd368e7390522a86764bbdf1e8b21aaef27c4c23ec9c899.1535671615",
    );
    expect(v2Token("foo", new Date(1535671585_000))).toBe(
      "v2.b77158328e80be2984eaf08788419d25f3484eae484aec1297af6bdf1a456610.1535671585",
    );
  });

  it("signs the whole-second unix timestamp, truncating milliseconds", () => {
    const token = v2Token("s3cret", new Date(1_700_000_000_999));
    const [version, hmac, ts] = token.split(".");
    expect(version).toBe("v2");
    expect(ts).toBe("1700000000");
    expect(hmac).toBe(createHmac("sha256", "s3cret").update("1700000000").digest("hex"));
    expect(v2Signature("s3cret", "1700000000").toString("hex")).toBe(hmac);
  });

  it("puts the token in an authorization: Bearer header", () => {
    const now = new Date(1_700_000_000_000);
    expect(bearerToken("x", now)).toBe(`Bearer ${v2Token("x", now)}`);
    expect(authMetadata("x", now).get("authorization")).toEqual([`Bearer ${v2Token("x", now)}`]);
  });

  it("changes with the clock, so it must be minted per call", () => {
    expect(v2Token("x", new Date(1_000_000))).not.toBe(v2Token("x", new Date(2_000_000)));
  });
});
