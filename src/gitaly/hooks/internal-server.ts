// The node's internal socket: a unix socket in the runtime directory serving HookService
// (and nothing else) to the hook programs git starts. It has its own token, minted at
// startup and handed to the hooks in their payload, so the node's client token never
// reaches a hook's environment and rotating it cannot break a push in flight.
import { randomBytes } from "node:crypto";
import { rm } from "node:fs/promises";
import * as grpc from "@grpc/grpc-js";
import { Registry } from "prom-client";
import { HookService } from "../../gen/hook_pb.js";
import { addService } from "../../shared/grpc/service.js";
import type { Logger } from "../../shared/logging.js";
import { Authenticator, authInterceptor } from "../auth/authenticator.js";
import type { GitalyConfig } from "../config/schema.js";
import { createGitlabClient, type GitlabClient } from "../gitlab/client.js";
import type { HookEnvironment } from "../service/deps.js";
import { type HookServiceDeps, hookService } from "../service/hook/hook-service.js";
import type { StorageLocator } from "../storage/locator.js";
import { BackchannelTransactionManager, type TransactionManager } from "../transaction/voting.js";
import { createHookEnvironment } from "./environment.js";
import { type HookProgram, type HooksRuntime, setupHooksRuntime } from "./runtime.js";

export interface InternalHookServerOptions {
  socketPath: string;
  /** Calls must carry a v2 token signed with this secret. */
  token: string;
  deps: HookServiceDeps;
  /** Run before authentication, e.g. the observability interceptor. */
  interceptors?: grpc.ServerInterceptor[];
}

export interface InternalHookServer {
  readonly socketPath: string;
  /** Stops accepting, lets running hooks finish for up to `graceMs`, then cancels them. */
  close(graceMs?: number): Promise<void>;
}

export async function startInternalHookServer(options: InternalHookServerOptions): Promise<InternalHookServer> {
  // A private registry: the authenticator publishes its token generation, which must
  // not replace the node's own in the node's metrics.
  const authenticator = new Authenticator({ token: options.token, transitioning: false }, { registry: new Registry() });
  const server = new grpc.Server({
    interceptors: [...(options.interceptors ?? []), authInterceptor(authenticator)],
    "grpc.max_receive_message_length": 16 * 1024 * 1024,
    "grpc.max_send_message_length": 16 * 1024 * 1024,
  });
  addService(server, HookService, hookService(options.deps));
  await rm(options.socketPath, { force: true });
  await new Promise<void>((resolve, reject) => {
    server.bindAsync(`unix:${options.socketPath}`, grpc.ServerCredentials.createInsecure(), (err) =>
      err ? reject(new Error(`listening on internal socket ${options.socketPath}: ${err.message}`)) : resolve(),
    );
  });
  return {
    socketPath: options.socketPath,
    async close(graceMs = 10_000) {
      await new Promise<void>((resolve) => {
        const timer = setTimeout(() => {
          server.forceShutdown();
          resolve();
        }, graceMs);
        server.tryShutdown(() => {
          clearTimeout(timer);
          resolve();
        });
      });
      await rm(options.socketPath, { force: true });
    },
  };
}

export interface NodeHooksOptions extends HookProgram {
  config: GitalyConfig;
  locator: StorageLocator;
  logger: Logger;
  /** Run before authentication on the internal socket, e.g. the observability interceptor. */
  interceptors?: grpc.ServerInterceptor[];
  /** Default: a client for [gitlab] (none when gitlab.url is unset). */
  gitlab?: GitlabClient;
  /** Default: votes over this process's backchannel sessions. */
  transactions?: TransactionManager;
  /** Default: process.pid (names the runtime directory). */
  pid?: number;
}

/** Everything a node needs for hooks, started: runtime directory, internal socket, HookEnvironment. */
export interface NodeHooks {
  /** For NodeDeps.hooks. */
  readonly environment: HookEnvironment;
  readonly runtime: HooksRuntime;
  readonly internalServer: InternalHookServer;
  readonly transactions: TransactionManager;
  /** Stops the internal server and removes the runtime directory. */
  close(graceMs?: number): Promise<void>;
}

export async function startNodeHooks(options: NodeHooksOptions): Promise<NodeHooks> {
  const gitlab = options.gitlab ?? (await createGitlabClient(options.config));
  const transactions = options.transactions ?? new BackchannelTransactionManager({ logger: options.logger });
  const runtime = await setupHooksRuntime({
    runtimeDir: options.config.runtime_dir,
    ...(options.pid === undefined ? {} : { pid: options.pid }),
    ...(options.nodeBinary === undefined ? {} : { nodeBinary: options.nodeBinary }),
    ...(options.hookProgram === undefined ? {} : { hookProgram: options.hookProgram }),
  });
  const token = randomBytes(32).toString("hex");
  let internalServer: InternalHookServer;
  try {
    internalServer = await startInternalHookServer({
      socketPath: runtime.internalSocketPath,
      token,
      deps: {
        locator: options.locator,
        logger: options.logger,
        customHooksDir: options.config.hooks.custom_hooks_dir,
        ...(gitlab ? { gitlab } : {}),
        transactions,
      },
      ...(options.interceptors ? { interceptors: options.interceptors } : {}),
    });
  } catch (err) {
    await runtime.cleanup();
    throw err;
  }
  const environment = createHookEnvironment({
    locator: options.locator,
    runtimeDir: runtime.runtimeDir,
    internalSocketPath: runtime.internalSocketPath,
    internalToken: token,
    hooksDirs: runtime.hooksDirs,
  });
  return {
    environment,
    runtime,
    internalServer,
    transactions,
    async close(graceMs) {
      await internalServer.close(graceMs);
      await runtime.cleanup();
    },
  };
}
