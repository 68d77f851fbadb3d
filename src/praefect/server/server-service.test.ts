import { describe, expect, it } from "vitest";
import { uuidV5, virtualStorageFilesystemId } from "./server-service.js";

describe("virtual storage filesystem IDs", () => {
  it("are RFC 4122 version-5 UUIDs", () => {
    // The RFC's example namespace (DNS) and a name with a published UUIDv5.
    expect(uuidV5("6ba7b810-9dad-11d1-80b4-00c04fd430c8", "python.org")).toBe("886313e1-3b8a-5372-9b90-0c9aee199e5d");
  });

  it("derive from the virtual storage name under upstream's namespace", () => {
    expect(virtualStorageFilesystemId("default")).toBe("d9f04423-6b13-5949-9ffa-c06279e0796e");
    expect(virtualStorageFilesystemId("other")).not.toBe(virtualStorageFilesystemId("default"));
  });
});
