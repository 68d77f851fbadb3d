import { describe, expect, it } from "vitest";
import { formatPostReceiveMessages } from "./post-receive-messages.js";

describe("post-receive messages", () => {
  it("prints a basic message between blank lines", () => {
    expect(
      formatPostReceiveMessages([{ type: "basic", message: "To create a merge request, visit:\n  http://x" }]),
    ).toBe("\nTo create a merge request, visit:\n  http://x\n\n");
  });

  it("centres an alert in a 72-column box, wrapping at 68 columns", () => {
    const words = "word ".repeat(20).trim(); // 99 characters: two lines
    const rule = "=".repeat(72);
    const first = "word ".repeat(13).trim(); // 64 characters; a 14th word would pass 68
    const second = "word ".repeat(7).trim(); // 34 characters
    expect(formatPostReceiveMessages([{ type: "alert", message: words }])).toBe(
      `\n${rule}\n\n${" ".repeat(4)}${first}\n${" ".repeat(19)}${second}\n\n${rule}\n\n`,
    );
  });

  it("rejects unknown message types", () => {
    expect(() => formatPostReceiveMessages([{ type: "fancy", message: "x" }])).toThrow("invalid message type: fancy");
  });
});
