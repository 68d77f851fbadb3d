// The hook program (upstream: cmd/gitaly-hooks). git runs it, through the scripts in
// the runtime directory, as `gitaly-hooks.js <hook> [args...]` for pre-receive, update,
// post-receive and reference-transaction. It reads GITALY_HOOKS_PAYLOAD, calls the
// matching HookService RPC on the node's internal socket with its environment and
// stdin, copies the RPC's stdout and stderr to its own and exits with the RPC's exit
// status. Everything on stderr reaches the pusher, so failures print one fixed line.
import {
  create,
  type DescMessage,
  type DescMethod,
  fromBinary,
  type MessageInitShape,
  toBinary,
} from "@bufbuild/protobuf";
import {
  HookService,
  PostReceiveHookRequestSchema,
  PostReceiveHookResponseSchema,
  PreReceiveHookRequestSchema,
  PreReceiveHookResponseSchema,
  ReferenceTransactionHookRequest_State,
  ReferenceTransactionHookRequestSchema,
  ReferenceTransactionHookResponseSchema,
  UpdateHookRequestSchema,
  UpdateHookResponseSchema,
} from "../../gen/hook_pb.js";
import { HookRpcError, internalAuthorization, streamingCall } from "./hook-client.js";
import { Hook, type HookBit, type HooksPayload, hooksPayloadFromEnv, isHookRequested } from "./payload.js";

/** The hook said no: exit with its status, without a message of ours. */
class HookExit extends Error {
  readonly code: number;
  constructor(code: number) {
    super(`hook returned error code ${code}`);
    this.code = code;
  }
}

interface OutputMessage {
  stdout: Uint8Array;
  stderr: Uint8Array;
  exitStatus?: { value: number } | undefined;
}

function write(stream: NodeJS.WritableStream, data: Uint8Array): Promise<void> {
  return new Promise((resolve, reject) => {
    stream.write(data, (err) => (err ? reject(err) : resolve()));
  });
}

function environment(): string[] {
  return Object.entries(process.env).flatMap(([key, value]) => (value === undefined ? [] : [`${key}=${value}`]));
}

/** git's push options (GIT_PUSH_OPTION_COUNT, GIT_PUSH_OPTION_<n>). */
function pushOptions(): string[] {
  const count = Number.parseInt(process.env.GIT_PUSH_OPTION_COUNT ?? "0", 10);
  if (!Number.isFinite(count) || count <= 0) return [];
  return Array.from({ length: count }, (_, i) => process.env[`GIT_PUSH_OPTION_${i}`] ?? "");
}

async function* withStdin<D extends DescMessage>(schema: D, first: MessageInitShape<D>): AsyncIterable<Uint8Array> {
  yield toBinary(schema, create(schema, first));
  for await (const chunk of process.stdin) {
    yield toBinary(schema, create(schema, { stdin: chunk as Buffer } as unknown as MessageInitShape<D>));
  }
}

async function* only(bytes: Uint8Array): AsyncIterable<Uint8Array> {
  yield bytes;
}

/** Calls `method`, relays its output and resolves with the exit status it reported. */
async function call(
  payload: HooksPayload,
  method: DescMethod,
  responseSchema: DescMessage,
  requests: AsyncIterable<Uint8Array>,
): Promise<number> {
  const metadata: Record<string, string> = {};
  if (payload.internalSocketToken !== "") metadata.authorization = internalAuthorization(payload.internalSocketToken);
  const user = payload.userDetails;
  if (user) {
    metadata.user_id = user.userId;
    metadata.username = user.username;
    metadata.remote_ip = user.remoteIp;
  }
  let exitStatus = 0;
  await streamingCall({
    socketPath: payload.internalSocket,
    path: `/${HookService.typeName}/${method.name}`,
    metadata,
    requests,
    onResponse: async (bytes) => {
      const response = fromBinary(responseSchema, bytes) as unknown as OutputMessage;
      if (response.exitStatus) exitStatus = response.exitStatus.value;
      if (response.stderr.length > 0) await write(process.stderr, response.stderr);
      if (response.stdout.length > 0) await write(process.stdout, response.stdout);
    },
  });
  return exitStatus;
}

const HOOK_BITS: Record<string, HookBit> = {
  "pre-receive": Hook.PreReceive,
  update: Hook.Update,
  "post-receive": Hook.PostReceive,
  "reference-transaction": Hook.ReferenceTransaction,
};

const TRANSACTION_STATES: Record<string, ReferenceTransactionHookRequest_State> = {
  prepared: ReferenceTransactionHookRequest_State.PREPARED,
  committed: ReferenceTransactionHookRequest_State.COMMITTED,
  aborted: ReferenceTransactionHookRequest_State.ABORTED,
};

async function run(hookName: string, args: string[]): Promise<number> {
  const bit = HOOK_BITS[hookName];
  if (bit === undefined) throw new Error(`subcommand name invalid: ${JSON.stringify(hookName)}`);
  const env = environment();
  const payload = hooksPayloadFromEnv(env);
  if (!isHookRequested(payload, bit)) return 0;
  const repository = payload.repository;
  const methods = HookService.method;

  switch (hookName) {
    case "update": {
      if (args.length !== 3)
        throw new Error(`update hook expects exactly three arguments, got ${JSON.stringify(args)}`);
      const [ref = "", oldValue = "", newValue = ""] = args;
      const request = create(UpdateHookRequestSchema, {
        repository,
        environmentVariables: env,
        ref: Buffer.from(ref, "utf8"),
        oldValue,
        newValue,
      });
      return call(
        payload,
        methods.updateHook,
        UpdateHookResponseSchema,
        only(toBinary(UpdateHookRequestSchema, request)),
      );
    }
    case "pre-receive":
      return call(
        payload,
        methods.preReceiveHook,
        PreReceiveHookResponseSchema,
        withStdin(PreReceiveHookRequestSchema, {
          repository,
          environmentVariables: env,
          gitPushOptions: pushOptions(),
        }),
      );
    case "post-receive":
      return call(
        payload,
        methods.postReceiveHook,
        PostReceiveHookResponseSchema,
        withStdin(PostReceiveHookRequestSchema, {
          repository,
          environmentVariables: env,
          gitPushOptions: pushOptions(),
        }),
      );
    default: {
      if (args.length !== 1) {
        throw new Error(`reference-transaction hook is missing required arguments, got ${JSON.stringify(args)}`);
      }
      // Like upstream: nothing is voted on before the references are locked.
      if (args[0] === "preparing") return 0;
      const state = TRANSACTION_STATES[args[0] ?? ""];
      if (state === undefined)
        throw new Error(`reference-transaction hook has invalid state: ${JSON.stringify(args[0])}`);
      return call(
        payload,
        methods.referenceTransactionHook,
        ReferenceTransactionHookResponseSchema,
        withStdin(ReferenceTransactionHookRequestSchema, { repository, environmentVariables: env, state }),
      );
    }
  }
}

async function main(): Promise<void> {
  const [hookName = "", ...args] = process.argv.slice(2);
  try {
    const status = await run(hookName, args);
    if (status !== 0) throw new HookExit(status);
    process.exitCode = 0;
  } catch (err) {
    if (err instanceof HookExit) {
      process.exitCode = err.code;
      return;
    }
    // The details are for the node's log (HookService logs its side); the pusher
    // only learns that the hook failed.
    process.stderr.write("error executing git hook\n");
    if (err instanceof HookRpcError && err.code === 8) {
      process.stderr.write("error resource exhausted, please try again later\n");
    }
    process.exitCode = 1;
  }
}

await main();
