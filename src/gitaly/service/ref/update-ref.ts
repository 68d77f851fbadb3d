// A `git update-ref -z --stdin` transaction: start, queue updates, optionally prepare
// (lock everything), commit. Git applies all updates or none; when it refuses, its
// stderr says why and is turned into the typed failures upstream distinguishes.
import type { Readable } from "node:stream";
import type { ConfigPair, GitProcess } from "../../git/command.js";
import { GitCommandError } from "../../git/command.js";
import type { RepoHandle } from "../../git/objects/repo-handle.js";

export type RefUpdateFailure =
  | { kind: "locked"; reference: string }
  | { kind: "packed-refs-locked" }
  | { kind: "invalid-format"; reference: string }
  | { kind: "file-directory-conflict"; existing: string; conflicting: string }
  | { kind: "in-transaction-conflict"; first: string; second: string }
  | { kind: "nonexistent-object"; reference: string; oid: string }
  | { kind: "non-commit-object"; reference: string; oid: string }
  | { kind: "mismatching-state"; reference: string; expected: string; actual: string }
  | { kind: "already-exists"; reference: string }
  | { kind: "multiple-updates"; reference: string };

/** Upstream's messages for each failure (updateref package). */
const FAILURE_MESSAGES: Record<RefUpdateFailure["kind"], string> = {
  locked: "reference is already locked",
  "packed-refs-locked": "packed-refs locked",
  "invalid-format": "invalid reference format",
  "file-directory-conflict": "file directory conflict",
  "in-transaction-conflict": "conflicting reference updates in the same transaction",
  "nonexistent-object": "target object missing",
  "non-commit-object": "target object not a commit",
  "mismatching-state": "reference does not point to expected object",
  "already-exists": "reference already exists",
  "multiple-updates": "reference has been updated multiple times within a transaction",
};

export class RefUpdateError extends Error {
  constructor(
    readonly failure: RefUpdateFailure | null,
    message: string,
    readonly stderr = "",
  ) {
    super(message);
    this.name = "RefUpdateError";
  }
}

// git's messages for the files backend (git 2.39 … 2.47), as upstream matches them.
const PATTERNS: { re: RegExp; failure: (m: RegExpExecArray) => RefUpdateFailure }[] = [
  {
    re: /^fatal: (prepare|commit): cannot lock ref '(.+?)': Unable to create '.*': File exists\./,
    failure: (m) => ({ kind: "locked", reference: m[2] as string }),
  },
  {
    re: /(packed-refs\.lock': File exists\.\n)|(packed-refs\.new: File exists\n$)/,
    failure: () => ({ kind: "packed-refs-locked" }),
  },
  {
    re: /^fatal: invalid ref format: (.*)\n$/,
    failure: (m) => ({ kind: "invalid-format", reference: m[1] as string }),
  },
  {
    re: /^fatal: .*: cannot lock ref '.*': '(.*)' exists; cannot create '(.*)'\n$/,
    failure: (m) => ({ kind: "file-directory-conflict", existing: m[1] as string, conflicting: m[2] as string }),
  },
  {
    re: /^fatal: .*: cannot process '(.*)' and '(.*)' at the same time\n$/,
    failure: (m) => ({ kind: "in-transaction-conflict", first: m[1] as string, second: m[2] as string }),
  },
  {
    re: /^fatal: (?:.*: cannot update ref '.*': )?trying to write ref '(.*)' with nonexistent object (.*)\n$/,
    failure: (m) => ({ kind: "nonexistent-object", reference: m[1] as string, oid: m[2] as string }),
  },
  {
    re: /^fatal: (?:.*: cannot update ref '.*': )?trying to write non-commit object (.*) to branch '(.*)'\n/,
    failure: (m) => ({ kind: "non-commit-object", reference: m[2] as string, oid: m[1] as string }),
  },
  {
    re: /^fatal: (?:.*: )?cannot lock ref '(.*)': is at (.*) but expected (.*)\n$/,
    failure: (m) => ({
      kind: "mismatching-state",
      reference: m[1] as string,
      actual: m[2] as string,
      expected: m[3] as string,
    }),
  },
  {
    re: /^fatal: .*: cannot lock ref '(.*)': reference already exists\n$/,
    failure: (m) => ({ kind: "already-exists", reference: m[1] as string }),
  },
  {
    re: /^fatal: .*: multiple updates for ref '(.*)' not allowed\n$/,
    failure: (m) => ({ kind: "multiple-updates", reference: m[1] as string }),
  },
];

/** The failure git's stderr describes, or null for anything else. */
export function parseUpdateRefStderr(stderr: string): RefUpdateFailure | null {
  for (const { re, failure } of PATTERNS) {
    const m = re.exec(stderr);
    if (m) return failure(m);
  }
  return null;
}

export function failureMessage(failure: RefUpdateFailure): string {
  return FAILURE_MESSAGES[failure.kind];
}

/** Reads "\n"-terminated lines from a stream on demand; null at end of stream. */
class LineReader {
  private buffered = "";
  private ended = false;
  private waiter: (() => void) | undefined;

  constructor(stream: Readable) {
    stream.setEncoding("latin1");
    stream.on("data", (chunk: string) => {
      this.buffered += chunk;
      this.wake();
    });
    const end = () => {
      this.ended = true;
      this.wake();
    };
    stream.on("end", end);
    stream.on("close", end);
    stream.on("error", end);
  }

  async next(): Promise<string | null> {
    for (;;) {
      const nl = this.buffered.indexOf("\n");
      if (nl >= 0) {
        const line = this.buffered.slice(0, nl);
        this.buffered = this.buffered.slice(nl + 1);
        return line;
      }
      if (this.ended) return null;
      await new Promise<void>((resolve) => {
        this.waiter = resolve;
      });
    }
  }

  private wake(): void {
    const w = this.waiter;
    this.waiter = undefined;
    w?.();
  }
}

export interface RefUpdaterOptions {
  /** Update symbolic refs themselves instead of what they point to. */
  noDeref?: boolean;
  /** From HookEnvironment.forCall: makes git run this node's reference-transaction hook. */
  env?: Record<string, string>;
  config?: ConfigPair[];
}

export class RefUpdater {
  private readonly proc: GitProcess;
  private readonly stdout: LineReader;
  private closed = false;

  private constructor(repo: RepoHandle, opts: RefUpdaterOptions) {
    this.proc = repo.spawn({
      subcommand: "update-ref",
      flags: ["-z", "--stdin", ...(opts.noDeref ? ["--no-deref"] : [])],
      stdin: "pipe",
      ...(opts.env ? { env: opts.env } : {}),
      ...(opts.config ? { config: opts.config } : {}),
    });
    this.stdout = new LineReader(this.proc.stdout);
  }

  /** Spawns git update-ref and starts a transaction. */
  static async start(repo: RepoHandle, opts: RefUpdaterOptions = {}): Promise<RefUpdater> {
    const updater = new RefUpdater(repo, opts);
    await updater.setState("start");
    return updater;
  }

  /** Queues `ref` → `newOid`; with `oldOid` only if the ref is at it (zero OID: must not exist). */
  update(ref: Uint8Array | string, newOid: string, oldOid = ""): void {
    this.write(Buffer.concat([Buffer.from("update "), toBytes(ref), Buffer.from(`\0${newOid}\0${oldOid}\0`)]));
  }

  /** Queues a deletion regardless of the ref's current value. */
  delete(ref: Uint8Array | string): void {
    this.write(Buffer.concat([Buffer.from("delete "), toBytes(ref), Buffer.from("\0\0")]));
  }

  /** Locks every queued ref and checks the expected values, without applying anything. */
  prepare(): Promise<void> {
    return this.setState("prepare");
  }

  async commit(): Promise<void> {
    await this.setState("commit");
    this.closed = true;
    this.proc.stdin?.end();
    await this.proc.wait().catch((err: unknown) => {
      throw this.failureFrom(err);
    });
  }

  /** Aborts an unfinished transaction: git releases its locks when its input ends. */
  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    this.proc.stdin?.end();
    await this.proc.wait().catch(() => {});
  }

  private write(data: Buffer): void {
    if (this.closed) throw new Error("reference transaction is closed");
    this.proc.stdin?.write(data);
  }

  private async setState(state: "start" | "prepare" | "commit"): Promise<void> {
    this.write(Buffer.from(`${state}\0`));
    const line = await this.stdout.next();
    if (line === `${state}: ok`) return;
    this.closed = true;
    this.proc.stdin?.end();
    const exit = await this.proc.wait().then(
      () => null,
      (err: unknown) => err,
    );
    if (exit !== null) throw this.failureFrom(exit);
    throw new RefUpdateError(
      null,
      `state update to "${state}" not successful: expected ok, got ${JSON.stringify(line)}`,
    );
  }

  private failureFrom(err: unknown): Error {
    if (!(err instanceof GitCommandError)) return err instanceof Error ? err : new Error(String(err));
    // GitCommandError trims stderr; the patterns expect git's trailing newline.
    const stderr = err.stderr.endsWith("\n") ? err.stderr : `${err.stderr}\n`;
    const failure = parseUpdateRefStderr(stderr);
    return new RefUpdateError(failure, failure ? failureMessage(failure) : err.message, err.stderr);
  }
}

function toBytes(ref: Uint8Array | string): Buffer {
  return typeof ref === "string" ? Buffer.from(ref, "utf8") : Buffer.from(ref);
}
