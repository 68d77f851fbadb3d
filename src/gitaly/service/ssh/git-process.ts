// Runs one git transport command (upload-pack, receive-pack, upload-archive) for an
// RPC: feeds its stdin from the client, hands its stdout and stderr to the caller as
// they come, and turns the way it ended into upstream's statuses: a negotiation
// timeout, a cancelled call, a client that hung up, or a failed git with its stderr.
import type { Writable } from "node:stream";
import { Code, RpcError } from "../../../shared/grpc/errors.js";
import { GitCommandError, type GitCommandFactory, type GitCommandOptions } from "../../git/command.js";
import type { NegotiationDeadline } from "./negotiation-deadline.js";
import { pumpOutput } from "./rpc-streams.js";

/** What git prints when its client closed the connection in the middle. */
export const CLIENT_HUNG_UP = "fatal: the remote end hung up unexpectedly\n";

/** A git command that ran and failed; `exitStatus` is what it exited with, if it did exit. */
export class GitRunError extends RpcError {
  readonly exitStatus: number | undefined;
  readonly stderr: string;

  constructor(code: Code, message: string, exitStatus: number | undefined, stderr: string, cause?: unknown) {
    super(code, message, { cause });
    this.name = "GitRunError";
    this.exitStatus = exitStatus;
    this.stderr = stderr;
  }
}

export interface RunGitOptions {
  git: GitCommandFactory;
  command: Omit<GitCommandOptions, "stdin" | "signal">;
  /** Fires when the client cancels the call. */
  callSignal: AbortSignal;
  deadline?: NegotiationDeadline;
  /** Writes the client's data into git's stdin and ends it. */
  feedStdin(stdin: Writable): Promise<void>;
  onStdout(chunk: Buffer): Promise<void>;
  onStderr?(chunk: Buffer): Promise<void>;
}

/** Go's %q, close enough for git's (ASCII) messages. */
export function goQuote(text: string): string {
  return JSON.stringify(text);
}

/**
 * Runs the command to completion. Throws GitRunError: DeadlineExceeded "waiting for
 * negotiation: context canceled", Canceled "context canceled" or "user canceled the
 * request", or Internal "cmd wait: exit status N, stderr: ..." (callers prefix it).
 */
export async function runGit(options: RunGitOptions): Promise<{ stderr: string; stdoutBytes: number }> {
  const signals = [options.callSignal];
  if (options.deadline) signals.push(options.deadline.signal);
  const proc = options.git.spawn({ ...options.command, stdin: "pipe", signal: AbortSignal.any(signals) });
  const stdin = proc.stdin as Writable;
  let stdoutBytes = 0;
  const stderrChunks: Buffer[] = [];
  // stderr already has the factory's capture listener, so it is forwarded from a
  // listener too, in order; it is small (progress and errors), unlike stdout.
  let stderrSent: Promise<void> = Promise.resolve();
  const stderrDone = new Promise<void>((resolve) => {
    proc.stderr.on("data", (chunk: Buffer) => {
      stderrChunks.push(chunk);
      const forward = options.onStderr;
      if (forward) stderrSent = stderrSent.then(() => forward(chunk));
    });
    proc.stderr.once("close", resolve);
  });
  const pumps = Promise.all([
    pumpOutput(proc.stdout, (chunk) => {
      stdoutBytes += chunk.length;
      return options.onStdout(chunk);
    }),
    stderrDone.then(() => stderrSent),
  ]);
  // A killed git leaves its pipes destroyed mid-stream; wait() says what happened.
  pumps.catch(() => {});
  void options.feedStdin(stdin).catch(() => stdin.destroy());
  try {
    await proc.wait();
    await pumps;
  } catch (err) {
    const stderr = Buffer.concat(stderrChunks).toString("utf8");
    if (!(err instanceof GitCommandError)) {
      throw new GitRunError(Code.INTERNAL, `cmd wait: ${(err as Error).message}`, undefined, stderr, err);
    }
    if (err.aborted && options.deadline?.expired && !options.callSignal.aborted) {
      throw new GitRunError(
        Code.DEADLINE_EXCEEDED,
        "waiting for negotiation: context canceled",
        undefined,
        stderr,
        err,
      );
    }
    if (err.aborted) throw new GitRunError(Code.CANCELLED, "context canceled", undefined, stderr, err);
    if (stderr === CLIENT_HUNG_UP) {
      throw new GitRunError(Code.CANCELLED, "user canceled the request", err.exitCode ?? undefined, stderr, err);
    }
    const how = err.exitCode !== null ? `exit status ${err.exitCode}` : `signal: ${err.signal ?? "unknown"}`;
    throw new GitRunError(
      Code.INTERNAL,
      `cmd wait: ${how}, stderr: ${goQuote(stderr)}`,
      err.exitCode ?? undefined,
      stderr,
      err,
    );
  } finally {
    options.deadline?.stop();
  }
  return { stderr: Buffer.concat(stderrChunks).toString("utf8"), stdoutBytes };
}

/** `prefix: <message>` with the code kept, the way upstream wraps errors with %w. */
export function wrapError(prefix: string, err: unknown): unknown {
  if (err instanceof GitRunError) {
    return new GitRunError(err.code, `${prefix}: ${err.message}`, err.exitStatus, err.stderr, err);
  }
  if (err instanceof RpcError) return new RpcError(err.code, `${prefix}: ${err.message}`, { metadata: err.metadata });
  return err;
}
