// What each git hook does inside Gitaly, behind HookService (upstream:
// internal/gitaly/hook). pre-receive asks GitLab (/allowed), runs the custom hooks and
// bumps GitLab's reference counter (/pre_receive); update runs the custom hooks;
// post-receive tells GitLab (/post_receive, whose messages the pusher sees) and runs
// the custom hooks; reference-transaction votes in the Praefect transaction.
//
// In a Praefect transaction only the primary runs the receive hooks: a rejection stops
// the transaction, and every node then casts a "synchronize" vote so secondaries do not
// lock references while the primary is still busy with GitLab and custom hooks.
import { realpath } from "node:fs/promises";
import { join, relative } from "node:path";
import type { Repository } from "../../../gen/shared_pb.js";
import type { Logger } from "../../../shared/logging.js";
import { type GitlabClient, GitlabRateLimitedError } from "../../gitlab/client.js";
import { type HooksPayload, hooksPayloadFromEnv, lookupEnv } from "../../hooks/payload.js";
import type { StorageLocator } from "../../storage/locator.js";
import {
  TransactionAbortedError,
  type TransactionManager,
  TransactionStoppedError,
  VotePhase,
  voteHash,
} from "../../transaction/voting.js";
import { findCustomHooks, type HookName, runCustomHooks } from "./custom-hooks.js";
import { formatPostReceiveMessages } from "./post-receive-messages.js";

export interface HookManagerDeps {
  locator: StorageLocator;
  logger: Logger;
  /** `[hooks] custom_hooks_dir`; "" for none. */
  customHooksDir: string;
  /** GitLab's internal API; without it pushes are allowed without asking. */
  gitlab?: GitlabClient;
  transactions: TransactionManager;
}

/** Where a hook's output goes (back to git, and through it to the pusher). */
export interface HookOutput {
  stdout(chunk: Uint8Array): Promise<void>;
  stderr(chunk: Uint8Array): Promise<void>;
}

/** GitLab refused the push; the message is shown to the pusher. */
export class NotAllowedError extends Error {
  constructor(message: string, options?: { cause?: unknown }) {
    super(`GitLab: ${message}`, options);
    this.name = "NotAllowedError";
  }
}

/** A hook failed with something to tell the server's log but nothing for the pusher. */
export class InternalHookError extends Error {
  constructor(message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = "InternalHookError";
  }
}

/** Variables of the hook process's environment that custom hooks inherit (upstream's list). */
const EXPORTED_ENV = [
  "HOME",
  "PATH",
  "LD_LIBRARY_PATH",
  "TZ",
  "GIT_TRACE",
  "GIT_TRACE_PACK_ACCESS",
  "GIT_TRACE_PACKET",
  "GIT_TRACE_PERFORMANCE",
  "GIT_TRACE_SETUP",
  "GIT_EXEC_PATH",
  "GIT_DEFAULT_REF_FORMAT",
  "all_proxy",
  "http_proxy",
  "HTTP_PROXY",
  "https_proxy",
  "HTTPS_PROXY",
  "no_proxy",
  "NO_PROXY",
  "GITALY_TESTING_ENABLE_ALL_FEATURE_FLAGS",
];

function isPrimary(payload: HooksPayload): boolean {
  return payload.transaction?.primary ?? true;
}

function payloadFrom(env: readonly string[]): HooksPayload {
  try {
    return hooksPayloadFromEnv(env);
  } catch (err) {
    throw new InternalHookError(`extracting hooks payload: ${(err as Error).message}`, { cause: err });
  }
}

/** GIT_PUSH_OPTION_COUNT and GIT_PUSH_OPTION_<n>, as git gives them to hooks. */
export function pushOptionsEnv(options: readonly string[]): Record<string, string> {
  if (options.length === 0) return {};
  const env: Record<string, string> = { GIT_PUSH_OPTION_COUNT: String(options.length) };
  options.forEach((option, i) => {
    env[`GIT_PUSH_OPTION_${i}`] = option;
  });
  return env;
}

/** The environment custom hooks run with. */
export function customHooksEnv(
  repoPath: string,
  payload: HooksPayload,
  pushOptions: readonly string[],
  env: readonly string[],
): Record<string, string> {
  const out: Record<string, string> = {};
  for (const entry of env) {
    const eq = entry.indexOf("=");
    const name = entry.slice(0, eq);
    if (eq > 0 && EXPORTED_ENV.includes(name)) out[name] = entry.slice(eq + 1);
  }
  Object.assign(out, pushOptionsEnv(pushOptions));
  const repo = payload.repository;
  // Pushed objects are still in git's quarantine directory: the hooks must see them.
  let objectDirectory = lookupEnv(env, "GIT_OBJECT_DIRECTORY") ?? "";
  if (objectDirectory === "" && repo.gitObjectDirectory !== "")
    objectDirectory = join(repoPath, repo.gitObjectDirectory);
  if (objectDirectory !== "") out.GIT_OBJECT_DIRECTORY = objectDirectory;
  let alternates = lookupEnv(env, "GIT_ALTERNATE_OBJECT_DIRECTORIES") ?? "";
  if (alternates === "" && repo.gitAlternateObjectDirectories.length > 0) {
    alternates = repo.gitAlternateObjectDirectories.map((dir) => join(repoPath, dir)).join(":");
  }
  if (alternates !== "") out.GIT_ALTERNATE_OBJECT_DIRECTORIES = alternates;
  const user = payload.userDetails;
  Object.assign(out, {
    GIT_DIR: repoPath,
    GL_REPOSITORY: repo.glRepository,
    GL_PROJECT_PATH: repo.glProjectPath,
    GL_ID: user?.userId ?? "",
    GL_USERNAME: user?.username ?? "",
    GL_PROTOCOL: user?.protocol ?? "",
  });
  return out;
}

async function runCustom(
  deps: HookManagerDeps,
  hookName: HookName,
  repository: Repository,
  payload: HooksPayload,
  run: { args: string[]; pushOptions: readonly string[]; env: readonly string[]; stdin?: Uint8Array },
  output: HookOutput,
  signal?: AbortSignal,
): Promise<void> {
  const repoPath = deps.locator.repositoryPath(repository);
  const hooks = await findCustomHooks(repoPath, hookName, deps.customHooksDir);
  if (hooks.length === 0) return;
  const payloadRepoPath = deps.locator.repositoryPath(payload.repository, { mustExist: false });
  await runCustomHooks(hooks, {
    repoPath,
    args: run.args,
    env: customHooksEnv(payloadRepoPath, payload, run.pushOptions, run.env),
    ...(run.stdin ? { stdin: run.stdin } : {}),
    onStdout: (chunk) => output.stdout(chunk),
    onStderr: (chunk) => output.stderr(chunk),
    ...(signal ? { signal } : {}),
  });
}

/**
 * Runs `hook` on the primary (stopping the transaction when it fails), then casts the
 * synchronizing vote on every node.
 */
async function primaryOnly(
  deps: HookManagerDeps,
  payload: HooksPayload,
  name: string,
  hook: () => Promise<void>,
): Promise<void> {
  const tx = payload.transaction;
  if (isPrimary(payload)) {
    try {
      await hook();
    } catch (err) {
      if (tx) {
        deps.logger.warn({ err, hook: name }, `stopping transaction because ${name} hook failed`);
        await deps.transactions.stop(tx).catch((stopErr: unknown) => {
          deps.logger.error({ err: stopErr, hook: name }, `failed stopping transaction in ${name} hook`);
        });
      }
      throw err;
    }
  }
  if (tx) {
    try {
      await deps.transactions.vote(tx, voteHash(`synchronize ${name} hook`), VotePhase.SYNCHRONIZED_PHASE);
    } catch (err) {
      throw new Error(`synchronizing ${name} hook: vote failed: ${(err as Error).message}`, { cause: err });
    }
  }
}

/** Quarantine directories from the hook's environment, relative to the repository (for /allowed). */
async function relativeObjectDirectories(
  repoPath: string,
  env: readonly string[],
): Promise<{ objectDirectory: string; alternates: string[] } | undefined> {
  const objectDirectory = lookupEnv(env, "GIT_OBJECT_DIRECTORY") ?? "";
  const alternates = lookupEnv(env, "GIT_ALTERNATE_OBJECT_DIRECTORIES") ?? "";
  if (objectDirectory === "" || alternates === "") return undefined;
  const real = await realpath(repoPath);
  return {
    objectDirectory: relative(real, objectDirectory),
    alternates: alternates.split(":").map((dir) => relative(real, dir)),
  };
}

export interface ReceiveHookInput {
  repository: Repository;
  pushOptions: readonly string[];
  /** The hook process's environment, `KEY=value`. */
  env: readonly string[];
  /** The hook's stdin: `<old> <new> <ref>` lines. */
  changes: Uint8Array;
  output: HookOutput;
  signal?: AbortSignal;
}

export async function preReceiveHook(deps: HookManagerDeps, input: ReceiveHookInput): Promise<void> {
  const payload = payloadFrom(input.env);
  await primaryOnly(deps, payload, "pre-receive", async () => {
    const repository = { ...input.repository };
    const repoPath = deps.locator.repositoryPath(input.repository);
    const quarantine = await relativeObjectDirectories(repoPath, input.env);
    if (quarantine) {
      repository.gitObjectDirectory = quarantine.objectDirectory;
      repository.gitAlternateObjectDirectories = quarantine.alternates;
    }
    if (input.changes.length === 0) throw new InternalHookError("hook got no reference updates");
    const changes = Buffer.from(input.changes).toString("utf8");
    const gitlab = deps.gitlab;
    const user = payload.userDetails;
    // These identify the push to GitLab; without GitLab there is no one to ask.
    if (gitlab) {
      if (repository.glRepository === "") throw new InternalHookError("repository not set");
      if (!user) throw new InternalHookError("payload has no receive hooks info");
      if (user.userId === "") throw new InternalHookError("user ID not set");
      if (user.protocol === "") throw new InternalHookError("protocol not set");
      const context = user.remoteIp ? { remoteIp: user.remoteIp } : {};
      let verdict: { allowed: boolean; message: string };
      try {
        verdict = await gitlab.allowed(
          {
            repoPath,
            relativePath: repository.relativePath,
            gitObjectDirectory: repository.gitObjectDirectory,
            gitAlternateObjectDirectories: repository.gitAlternateObjectDirectories,
            glRepository: repository.glRepository,
            glId: user.userId,
            protocol: user.protocol,
            changes,
            pushOptions: [...input.pushOptions],
          },
          context,
        );
      } catch (err) {
        // Upstream cannot tell API errors from denials and shows either to the user.
        if (err instanceof GitlabRateLimitedError) throw err;
        throw new NotAllowedError((err as Error).message, { cause: err });
      }
      if (!verdict.allowed) throw new NotAllowedError(verdict.message);
    }
    await runCustom(
      deps,
      "pre-receive",
      repository,
      payload,
      { args: [], pushOptions: input.pushOptions, env: input.env, stdin: input.changes },
      input.output,
      input.signal,
    );
    if (gitlab) {
      let increased: boolean;
      try {
        increased = await gitlab.preReceive(repository.glRepository, user?.remoteIp ? { remoteIp: user.remoteIp } : {});
      } catch (err) {
        if (err instanceof GitlabRateLimitedError) throw err;
        throw new InternalHookError(`calling pre_receive endpoint: ${(err as Error).message}`, { cause: err });
      }
      // Upstream fails the hook without any message here.
      if (!increased) throw new Error("");
    }
  });
}

export async function postReceiveHook(deps: HookManagerDeps, input: ReceiveHookInput): Promise<void> {
  const payload = payloadFrom(input.env);
  await primaryOnly(deps, payload, "post-receive", async () => {
    if (input.changes.length === 0) throw new InternalHookError("hook got no reference updates");
    const gitlab = deps.gitlab;
    const user = payload.userDetails;
    if (gitlab) {
      if (!user) throw new InternalHookError("payload has no receive hooks info");
      if (user.userId === "") throw new InternalHookError("user ID not set");
      if (input.repository.glRepository === "") throw new InternalHookError("repository not set");
      let result: Awaited<ReturnType<GitlabClient["postReceive"]>>;
      try {
        result = await gitlab.postReceive(
          {
            glRepository: input.repository.glRepository,
            glId: user.userId,
            changes: Buffer.from(input.changes).toString("utf8"),
            pushOptions: [...input.pushOptions],
          },
          user.remoteIp ? { remoteIp: user.remoteIp } : {},
        );
      } catch (err) {
        if (err instanceof GitlabRateLimitedError) throw err;
        throw new Error(`GitLab: ${(err as Error).message}`, { cause: err });
      }
      let text: string;
      try {
        text = formatPostReceiveMessages(result.messages);
      } catch (err) {
        throw new Error(`error writing messages to stream: ${(err as Error).message}`, { cause: err });
      }
      if (text !== "") await input.output.stdout(Buffer.from(text, "utf8"));
      if (!result.decreased) throw new Error("");
    }
    await runCustom(
      deps,
      "post-receive",
      input.repository,
      payload,
      { args: [], pushOptions: input.pushOptions, env: input.env, stdin: input.changes },
      input.output,
      input.signal,
    );
  });
}

const OBJECT_ID_HEX_LENGTH: Record<string, number> = { sha1: 40, sha256: 64 };

function objectIdLength(format: string): number {
  // Payloads of older writers may lack the format; every such repository is SHA-1.
  const length = OBJECT_ID_HEX_LENGTH[format === "" ? "sha1" : format];
  if (length === undefined)
    throw new InternalHookError(`looking up object hash: unknown object format: ${JSON.stringify(format)}`);
  return length;
}

function validateObjectId(hex: string, length: number): string | undefined {
  if (hex.length !== length) {
    return `invalid object ID: ${JSON.stringify(hex)}, expected length ${length}, got ${hex.length}`;
  }
  const bad = /[^0-9a-f]/.exec(hex);
  if (bad) return `invalid object ID: ${JSON.stringify(hex)}, invalid character '${bad[0]}'`;
  return undefined;
}

export interface UpdateHookInput {
  repository: Repository;
  ref: string;
  oldValue: string;
  newValue: string;
  env: readonly string[];
  output: HookOutput;
  signal?: AbortSignal;
}

export async function updateHook(deps: HookManagerDeps, input: UpdateHookInput): Promise<void> {
  const payload = payloadFrom(input.env);
  await primaryOnly(deps, payload, "update", async () => {
    const length = objectIdLength(payload.objectFormat);
    if (input.ref === "") throw new InternalHookError("hook got no reference");
    const badOld = validateObjectId(input.oldValue, length);
    if (badOld) throw new InternalHookError(`hook got invalid old value: ${badOld}`);
    const badNew = validateObjectId(input.newValue, length);
    if (badNew) throw new InternalHookError(`hook got invalid new value: ${badNew}`);
    if (!payload.userDetails) throw new InternalHookError("payload has no receive hooks info");
    await runCustom(
      deps,
      "update",
      input.repository,
      payload,
      { args: [input.ref, input.oldValue, input.newValue], pushOptions: [], env: input.env },
      input.output,
      input.signal,
    );
  });
}

export type ReferenceTransactionState = "preparing" | "prepared" | "committed" | "aborted";

/**
 * Whether every line force-deletes a reference (`<zero> <zero> <ref>`): git's cleanup
 * of packed-refs during a deletion, which other nodes may not mirror; the same
 * deletions come again in the loose-refs transaction, which is the one voted on.
 */
export function isForceDeletionsOnly(changes: Uint8Array, objectIdHexLength: number): boolean {
  const zero = "0".repeat(objectIdHexLength);
  const prefix = `${zero} ${zero} `;
  const lines = Buffer.from(changes).toString("utf8").split("\n");
  if (lines[lines.length - 1] === "") lines.pop();
  return lines.every((line) => line.startsWith(prefix));
}

/** Votes SHA-1 of the hook's stdin in the call's transaction, if there is one. */
export async function referenceTransactionHook(
  deps: HookManagerDeps,
  input: { state: ReferenceTransactionState; env: readonly string[]; changes: Uint8Array },
): Promise<void> {
  const payload = payloadFrom(input.env);
  const length = objectIdLength(payload.objectFormat);
  let phase: VotePhase;
  switch (input.state) {
    case "preparing":
      phase = VotePhase.PREPARING_PHASE;
      break;
    case "prepared":
      phase = VotePhase.PREPARED_PHASE;
      break;
    case "committed":
      phase = VotePhase.COMMITTED_PHASE;
      break;
    default:
      return;
  }
  if (isForceDeletionsOnly(input.changes, length)) return;
  const tx = payload.transaction;
  if (!tx) return;
  try {
    await deps.transactions.vote(tx, voteHash(input.changes), phase);
  } catch (err) {
    if (err instanceof TransactionAbortedError || err instanceof TransactionStoppedError) throw err;
    throw new Error(`error voting on transaction: ${(err as Error).message}`, { cause: err });
  }
}
