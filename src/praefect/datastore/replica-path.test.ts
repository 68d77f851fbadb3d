import { createHash } from "node:crypto";
import { describe, expect, it } from "vitest";
import {
  derivePoolPath,
  deriveReplicaPath,
  isPoolPath,
  isPraefectPoolPath,
  isRailsPoolPath,
  replicaPathFor,
} from "./replica-path.js";

describe("replica paths", () => {
  it("fans repositories out by the SHA-256 of the decimal ID", () => {
    // sha256("1") = 6b86b273...
    expect(deriveReplicaPath(1)).toBe("@cluster/repositories/6b/86/1");
    const hash = createHash("sha256").update("1234567").digest("hex");
    expect(deriveReplicaPath(1234567)).toBe(`@cluster/repositories/${hash.slice(0, 2)}/${hash.slice(2, 4)}/1234567`);
    expect(derivePoolPath(1)).toBe("@cluster/pools/6b/86/1");
  });

  it("recognises Rails pool paths only when the hash matches the directories", () => {
    const hex = `abcd${"0".repeat(60)}`;
    expect(isRailsPoolPath(`@pools/ab/cd/${hex}.git`)).toBe(true);
    expect(isRailsPoolPath(`@pools/ab/ce/${hex}.git`)).toBe(false);
    expect(isRailsPoolPath(`@pools/ab/cd/${hex}`)).toBe(false);
    expect(isRailsPoolPath("@hashed/ab/cd/x.git")).toBe(false);
    expect(isPraefectPoolPath("@cluster/pools/6b/86/1")).toBe(true);
    expect(isPraefectPoolPath("@cluster/repositories/6b/86/1")).toBe(false);
    expect(isPoolPath("@cluster/pools/6b/86/1")).toBe(true);
  });

  it("gives pools created through Praefect a pool replica path", () => {
    const hex = `abcd${"0".repeat(60)}`;
    expect(replicaPathFor(`@pools/ab/cd/${hex}.git`, 1)).toBe("@cluster/pools/6b/86/1");
    expect(replicaPathFor("@hashed/aa/bb/project.git", 1)).toBe("@cluster/repositories/6b/86/1");
  });
});
