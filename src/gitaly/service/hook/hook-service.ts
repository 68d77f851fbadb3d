// gitaly.HookService: what the hook program (gitaly-hooks) calls when git runs one of
// this node's hooks. Served only on the internal socket. Every call names the
// repository, carries the hook process's environment (with GITALY_HOOKS_PAYLOAD) and
// streams the hook's stdin; the response streams the output back and ends with the
// exit status the hook program exits with.
import { create, type DescMessage, type MessageInitShape, type MessageShape } from "@bufbuild/protobuf";
import {
  type HookService,
  PostReceiveHookResponseSchema,
  PreReceiveHookResponseSchema,
  type ReferenceTransactionHookRequest,
  ReferenceTransactionHookRequest_State,
  ReferenceTransactionHookResponseSchema,
  UpdateHookResponseSchema,
} from "../../../gen/hook_pb.js";
import type { Repository } from "../../../gen/shared_pb.js";
import { Code, RpcError, toServiceError } from "../../../shared/grpc/errors.js";
import type { ServiceImplementation } from "../../../shared/grpc/service.js";
import { GitlabRateLimitedError } from "../../gitlab/client.js";
import { TransactionAbortedError, TransactionStoppedError } from "../../transaction/voting.js";
import { callSignal } from "../repository/repository-service.js";
import { bidi, sendMessage } from "../ssh/rpc-streams.js";
import { CustomHookExitError } from "./custom-hooks.js";
import {
  type HookManagerDeps,
  type HookOutput,
  postReceiveHook,
  preReceiveHook,
  type ReferenceTransactionState,
  referenceTransactionHook,
  updateHook,
} from "./hook-manager.js";

export type HookServiceDeps = HookManagerDeps;

type OutputSchema =
  | typeof PreReceiveHookResponseSchema
  | typeof PostReceiveHookResponseSchema
  | typeof UpdateHookResponseSchema
  | typeof ReferenceTransactionHookResponseSchema;

interface ResponseCall<Res> {
  write(message: Res): boolean;
  readonly cancelled: boolean;
  on(event: "drain" | "cancelled" | "close", listener: () => void): unknown;
  off(event: "drain" | "cancelled" | "close", listener: () => void): unknown;
}

function responder<S extends OutputSchema>(schema: S, call: ResponseCall<MessageShape<S>>) {
  const send = (init: MessageInitShape<S>) =>
    sendMessage(call, create(schema as DescMessage, init as MessageInitShape<DescMessage>) as MessageShape<S>);
  const output: HookOutput = {
    stdout: (chunk) => send({ stdout: chunk } as MessageInitShape<S>),
    stderr: (chunk) => send({ stderr: chunk } as MessageInitShape<S>),
  };
  return { send, output };
}

/** Upstream answers a bad repository in any hook call with InvalidArgument. */
function validateRepository(deps: HookServiceDeps, repository: Repository | undefined): Repository {
  try {
    deps.locator.validateRepository(repository);
  } catch (err) {
    throw new RpcError(Code.INVALID_ARGUMENT, (err as Error).message, { cause: err });
  }
  return repository as Repository;
}

async function firstRequest<Req>(requests: AsyncIterator<Req>): Promise<Req> {
  const first = await requests.next();
  if (first.done) throw new RpcError(Code.INTERNAL, "receiving first request: EOF");
  return first.value;
}

/** The stdin of the requests after the first. */
async function readStdin<Req extends { stdin: Uint8Array }>(requests: AsyncIterator<Req>): Promise<Buffer> {
  const chunks: Buffer[] = [];
  for (;;) {
    const next = await requests.next();
    if (next.done) return Buffer.concat(chunks);
    if (next.value.stdin.length > 0) chunks.push(Buffer.from(next.value.stdin));
  }
}

/**
 * How pre- and post-receive report a failed hook: a custom hook's exit code as is (its
 * output already went out), anything else as exit status 1 with the error on stderr.
 */
function receiveHookFailure(err: unknown): { exitCode: number; stderr: string } {
  if (err instanceof GitlabRateLimitedError) {
    throw new RpcError(Code.RESOURCE_EXHAUSTED, "rate limited", { cause: err });
  }
  if (err instanceof CustomHookExitError) return { exitCode: err.exitCode, stderr: "" };
  return { exitCode: 1, stderr: err instanceof Error ? err.message : String(err) };
}

type ReceiveRequest = {
  repository?: Repository;
  environmentVariables: string[];
  stdin: Uint8Array;
  gitPushOptions: string[];
};

function receiveHookHandler<Req extends ReceiveRequest, S extends OutputSchema>(
  deps: HookServiceDeps,
  name: "pre-receive" | "post-receive",
  schema: S,
  run: typeof preReceiveHook,
) {
  return bidi<Req, MessageShape<S>>(async (call) => {
    const requests = call[Symbol.asyncIterator]() as AsyncIterator<Req>;
    const first = await firstRequest(requests);
    const repository = validateRepository(deps, first.repository);
    const { send, output } = responder(schema, call);
    const changes = await readStdin(requests);
    try {
      await run(deps, {
        repository,
        pushOptions: first.gitPushOptions,
        env: first.environmentVariables,
        changes,
        output,
        signal: callSignal(call),
      });
    } catch (err) {
      const failure = receiveHookFailure(err);
      deps.logger.info(
        { err, hook: name, storage: repository.storageName, relativePath: repository.relativePath },
        `${name} hook rejected the change`,
      );
      const stderr = failure.stderr === "" ? {} : { stderr: Buffer.from(failure.stderr, "utf8") };
      await send({ ...stderr, exitStatus: { value: failure.exitCode } } as MessageInitShape<S>);
      return;
    }
    await send({ exitStatus: { value: 0 } } as MessageInitShape<S>);
  });
}

const TRANSACTION_STATES: Record<number, ReferenceTransactionState> = {
  [ReferenceTransactionHookRequest_State.PREPARING]: "preparing",
  [ReferenceTransactionHookRequest_State.PREPARED]: "prepared",
  [ReferenceTransactionHookRequest_State.COMMITTED]: "committed",
  [ReferenceTransactionHookRequest_State.ABORTED]: "aborted",
};

export function hookService(deps: HookServiceDeps): ServiceImplementation<(typeof HookService)["method"]> {
  return {
    preReceiveHook: receiveHookHandler(deps, "pre-receive", PreReceiveHookResponseSchema, preReceiveHook),
    postReceiveHook: receiveHookHandler(deps, "post-receive", PostReceiveHookResponseSchema, postReceiveHook),

    updateHook: (call) => {
      (async () => {
        const request = call.request;
        const repository = validateRepository(deps, request.repository);
        const { send, output } = responder(UpdateHookResponseSchema, call);
        let exitCode = 0;
        try {
          await updateHook(deps, {
            repository,
            ref: Buffer.from(request.ref).toString("utf8"),
            oldValue: request.oldValue,
            newValue: request.newValue,
            env: request.environmentVariables,
            output,
            signal: callSignal(call),
          });
        } catch (err) {
          if (!(err instanceof CustomHookExitError))
            throw new RpcError(Code.INTERNAL, (err as Error).message, { cause: err });
          exitCode = err.exitCode;
        }
        await send({ exitStatus: { value: exitCode } });
      })().then(
        () => {
          if (!call.cancelled) call.end();
        },
        (err: unknown) => {
          if (!call.cancelled) call.emit("error", toServiceError(err));
        },
      );
    },

    referenceTransactionHook: bidi(async (call) => {
      const requests = call[Symbol.asyncIterator]() as AsyncIterator<ReferenceTransactionHookRequest>;
      const first = await firstRequest(requests);
      validateRepository(deps, first.repository);
      const state = TRANSACTION_STATES[first.state];
      if (state === undefined) throw new RpcError(Code.INVALID_ARGUMENT, "invalid hook state");
      const changes = await readStdin(requests);
      try {
        await referenceTransactionHook(deps, { state, env: first.environmentVariables, changes });
      } catch (err) {
        const message = `reference-transaction hook: ${(err as Error).message}`;
        if (err instanceof TransactionAbortedError) throw new RpcError(Code.ABORTED, message, { cause: err });
        if (err instanceof TransactionStoppedError)
          throw new RpcError(Code.FAILED_PRECONDITION, message, { cause: err });
        throw new RpcError(Code.INTERNAL, message, { cause: err });
      }
      const { send } = responder(ReferenceTransactionHookResponseSchema, call);
      await send({ exitStatus: { value: 0 } });
    }),
  };
}
