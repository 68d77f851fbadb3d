import { mkdirSync, mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { create } from "@bufbuild/protobuf";
import pino from "pino";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { RepositorySchema } from "../../../gen/shared_pb.js";
import { encodeHooksPayload, HOOKS_PAYLOAD_ENV, type HooksPayload, RECEIVE_PACK_HOOKS } from "../../hooks/payload.js";
import { StorageLocator } from "../../storage/locator.js";
import {
  type Transaction,
  TransactionAbortedError,
  type TransactionManager,
  VotePhase,
  voteHash,
} from "../../transaction/voting.js";
import { customHooksEnv, isForceDeletionsOnly, pushOptionsEnv, referenceTransactionHook } from "./hook-manager.js";

const ZERO = "0".repeat(40);
const OID = "a".repeat(40);

/** Records votes; answers with `outcome`. */
class RecordingTransactions implements TransactionManager {
  readonly votes: { tx: Transaction; hash: string; phase: VotePhase }[] = [];
  outcome: Error | undefined;
  async vote(tx: Transaction, hash: Uint8Array, phase: VotePhase): Promise<void> {
    this.votes.push({ tx, hash: Buffer.from(hash).toString("hex"), phase });
    if (this.outcome) throw this.outcome;
  }
  async stop(): Promise<void> {}
}

let tmp: string;
let locator: StorageLocator;

beforeAll(() => {
  tmp = mkdtempSync(join(tmpdir(), "hook-manager-"));
  mkdirSync(join(tmp, "storage"));
  locator = new StorageLocator([{ name: "default", path: join(tmp, "storage") }]);
});

afterAll(() => rmSync(tmp, { recursive: true, force: true }));

const repository = create(RepositorySchema, {
  storageName: "default",
  relativePath: "a.git",
  glRepository: "project-1",
  glProjectPath: "g/p",
});

function env(payload: Partial<HooksPayload>): string[] {
  const full: HooksPayload = {
    requestedHooks: RECEIVE_PACK_HOOKS,
    objectFormat: "sha1",
    runtimeDir: "/r",
    internalSocket: "/r/sock.d/intern",
    internalSocketToken: "t",
    repository,
    ...payload,
  };
  return ["PATH=/usr/bin", "SECRET=x", `${HOOKS_PAYLOAD_ENV}=${encodeHooksPayload(full)}`];
}

const tx: Transaction = { backchannelId: 1n, id: 5n, node: "gitaly-1", primary: true };

describe("reference-transaction hook", () => {
  const deps = (transactions: TransactionManager) => ({
    locator,
    logger: pino({ level: "silent" }),
    customHooksDir: "",
    transactions,
  });

  it("votes the SHA-1 of its stdin in each phase, and nothing when aborted", async () => {
    const transactions = new RecordingTransactions();
    const changes = Buffer.from(`${ZERO} ${OID} refs/heads/main\n`);
    for (const state of ["preparing", "prepared", "committed", "aborted"] as const) {
      await referenceTransactionHook(deps(transactions), { state, env: env({ transaction: tx }), changes });
    }
    const hash = voteHash(changes).toString("hex");
    expect(transactions.votes.map((v) => [v.phase, v.hash, v.tx.id])).toEqual([
      [VotePhase.PREPARING_PHASE, hash, 5n],
      [VotePhase.PREPARED_PHASE, hash, 5n],
      [VotePhase.COMMITTED_PHASE, hash, 5n],
    ]);
  });

  it("does not vote without a transaction, nor on force deletions only", async () => {
    const transactions = new RecordingTransactions();
    await referenceTransactionHook(deps(transactions), {
      state: "prepared",
      env: env({}),
      changes: Buffer.from(`${ZERO} ${OID} refs/heads/main\n`),
    });
    await referenceTransactionHook(deps(transactions), {
      state: "prepared",
      env: env({ transaction: tx }),
      changes: Buffer.from(`${ZERO} ${ZERO} refs/heads/a\n${ZERO} ${ZERO} refs/heads/b\n`),
    });
    expect(transactions.votes).toEqual([]);
  });

  it("passes an aborted transaction on as such", async () => {
    const transactions = new RecordingTransactions();
    transactions.outcome = new TransactionAbortedError();
    await expect(
      referenceTransactionHook(deps(transactions), {
        state: "prepared",
        env: env({ transaction: tx }),
        changes: Buffer.from(`${ZERO} ${OID} refs/heads/main\n`),
      }),
    ).rejects.toBeInstanceOf(TransactionAbortedError);
  });
});

describe("hook helpers", () => {
  it("recognises force-deletion-only input per object format", () => {
    expect(isForceDeletionsOnly(Buffer.from(`${ZERO} ${ZERO} refs/heads/a\n`), 40)).toBe(true);
    expect(isForceDeletionsOnly(Buffer.from(""), 40)).toBe(true);
    expect(isForceDeletionsOnly(Buffer.from(`${OID} ${ZERO} refs/heads/a\n`), 40)).toBe(false);
    expect(isForceDeletionsOnly(Buffer.from(`${ZERO} ${ZERO} refs/heads/a\n`), 64)).toBe(false);
  });

  it("gives custom hooks a filtered environment with the push's identity", () => {
    const hookEnv = [
      ...env({ userDetails: { userId: "user-1", username: "jane", protocol: "ssh", remoteIp: "" } }),
      "GIT_OBJECT_DIRECTORY=/repo/objects/incoming-1",
      "GIT_ALTERNATE_OBJECT_DIRECTORIES=/repo/objects",
    ];
    const payload = {
      requestedHooks: RECEIVE_PACK_HOOKS,
      objectFormat: "sha1",
      runtimeDir: "",
      internalSocket: "",
      internalSocketToken: "",
      repository,
      userDetails: { userId: "user-1", username: "jane", protocol: "ssh", remoteIp: "" },
    };
    expect(customHooksEnv("/repo", payload, ["a", "b=c"], hookEnv)).toEqual({
      PATH: "/usr/bin",
      GIT_PUSH_OPTION_COUNT: "2",
      GIT_PUSH_OPTION_0: "a",
      GIT_PUSH_OPTION_1: "b=c",
      GIT_OBJECT_DIRECTORY: "/repo/objects/incoming-1",
      GIT_ALTERNATE_OBJECT_DIRECTORIES: "/repo/objects",
      GIT_DIR: "/repo",
      GL_REPOSITORY: "project-1",
      GL_PROJECT_PATH: "g/p",
      GL_ID: "user-1",
      GL_USERNAME: "jane",
      GL_PROTOCOL: "ssh",
    });
    expect(pushOptionsEnv([])).toEqual({});
  });
});
