// Test harness for the transport services (SmartHTTPService, SSHService):
//
// - startTransportNode: an in-process gRPC server wired like gitaly-server.ts (real
//   TCP listener, listenmux for backchannel clients, grpc-js connection injector)
//   serving both services over real storages, with a HookEnvironment that makes git
//   run recording hook scripts, so pushes show which hooks ran, for whom, on which refs.
// - startSmartHttpProxy: a small git smart HTTP front (what Workhorse does) so a real
//   `git clone/fetch/push http://...` exercises the RPCs end to end.
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { createServer as createHttpServer, type IncomingMessage, type ServerResponse } from "node:http";
import { createServer as createNetServer, type Server as NetServer } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { Readable } from "node:stream";
import { createGunzip } from "node:zlib";
import { create } from "@bufbuild/protobuf";
import * as grpc from "@grpc/grpc-js";
import { Registry } from "prom-client";
import type { Repository } from "../../../src/gen/shared_pb.js";
import {
  PostReceivePackRequestSchema,
  type PostReceivePackResponse,
  SmartHTTPService,
} from "../../../src/gen/smarthttp_pb.js";
import { SSHService } from "../../../src/gen/ssh_pb.js";
import { loadGitalyConfig } from "../../../src/gitaly/config/load.js";
import type { GitalyConfig } from "../../../src/gitaly/config/schema.js";
import { CatfileCache } from "../../../src/gitaly/git/catfile.js";
import { GitCommandFactory } from "../../../src/gitaly/git/command.js";
import { listenmux } from "../../../src/gitaly/server/listenmux.js";
import type { HookEnvironment, NodeDeps, PushUser } from "../../../src/gitaly/service/deps.js";
import { smartHttpService } from "../../../src/gitaly/service/smarthttp/smarthttp-service.js";
import { sshService } from "../../../src/gitaly/service/ssh/ssh-service.js";
import { StorageLocator } from "../../../src/gitaly/storage/locator.js";
import { dialBackchannel } from "../../../src/shared/grpc/backchannel-client.js";
import { addService, createClient } from "../../../src/shared/grpc/service.js";
import { createLogger } from "../../../src/shared/logging.js";

/** What a push told the HookEnvironment. */
export interface HookCall {
  relativePath: string;
  user: PushUser | undefined;
}

export interface TransportNode {
  readonly dir: string;
  /** host:port of the TCP listener (plain gRPC and backchannel clients). */
  readonly address: string;
  readonly storage: { name: string; path: string };
  readonly registry: Registry;
  readonly config: GitalyConfig;
  readonly hookCalls: HookCall[];
  /** Lines the hook scripts wrote: `<hook> <user> <args/stdin...>`. */
  hookLog(): string[];
  clearHookLog(): void;
  repository(relativePath: string): { storageName: string; relativePath: string };
  /** A plain (non-backchannel) grpc-js channel. */
  channel(): grpc.Client;
  stop(): Promise<void>;
}

/** Pushes whose refs start with `rejected-` are refused by pre-receive with this message. */
export const HOOK_REJECTION = "GitLab: pushes to rejected-* branches are not allowed";

const HOOK_SCRIPTS: Record<string, string> = {
  "pre-receive": `while read old new ref; do
  echo "pre-receive $TEST_HOOK_USER $old $new $ref" >> "$TEST_HOOK_LOG"
  case "$ref" in refs/heads/rejected-*) echo "${HOOK_REJECTION}" >&2; exit 1;; esac
done`,
  update: `echo "update $TEST_HOOK_USER $2 $3 $1" >> "$TEST_HOOK_LOG"`,
  "post-receive": `while read old new ref; do
  echo "post-receive $TEST_HOOK_USER $old $new $ref" >> "$TEST_HOOK_LOG"
done`,
  "reference-transaction": `while read old new ref; do
  echo "reference-transaction:$1 $TEST_HOOK_USER $old $new $ref" >> "$TEST_HOOK_LOG"
done`,
};

/** A stand-in for the node's HookEnvironment: git runs the scripts above. */
function recordingHooks(dir: string, calls: HookCall[]): { hooks: HookEnvironment; logFile: string } {
  const hooksDir = join(dir, "hooks");
  mkdirSync(hooksDir, { recursive: true });
  for (const [name, body] of Object.entries(HOOK_SCRIPTS)) {
    writeFileSync(join(hooksDir, name), `#!/bin/sh\n${body}\n`, { mode: 0o755 });
  }
  const logFile = join(dir, "hooks.log");
  writeFileSync(logFile, "");
  const hooks: HookEnvironment = {
    async forCall(call, repository: Repository, user?: PushUser) {
      if (!call.metadata || !call.getPeer()) throw new Error("forCall without a call");
      calls.push({ relativePath: repository.relativePath, user });
      const who = user ? `${user.glId}/${user.glUsername}/${user.glRepository}/${user.protocol}` : "-";
      return {
        env: { TEST_HOOK_LOG: logFile, TEST_HOOK_USER: who },
        config: [{ key: "core.hooksPath", value: hooksDir }],
      };
    },
  };
  return { hooks, logFile };
}

function listenOn(server: NetServer): Promise<string> {
  return new Promise((resolve, reject) => {
    server.once("error", reject);
    server.listen(0, "127.0.0.1", () => {
      const a = server.address();
      if (a === null || typeof a === "string") reject(new Error("no TCP address"));
      else resolve(`127.0.0.1:${a.port}`);
    });
  });
}

export async function startTransportNode(options: { extraToml?: string } = {}): Promise<TransportNode> {
  const dir = mkdtempSync(join(tmpdir(), "transport-node-"));
  const storagePath = join(dir, "storages", "default");
  mkdirSync(storagePath, { recursive: true });
  const { config } = loadGitalyConfig(
    [
      `listen_addr = "127.0.0.1:0"`,
      `runtime_dir = ${JSON.stringify(join(dir, "run"))}`,
      "",
      options.extraToml ?? "",
      "",
      "[[storage]]",
      `name = "default"`,
      `path = ${JSON.stringify(storagePath)}`,
    ].join("\n"),
  );
  const hookCalls: HookCall[] = [];
  const { hooks, logFile } = recordingHooks(dir, hookCalls);
  const git = new GitCommandFactory({ extraConfig: config.git.config });
  const catfile = new CatfileCache(git, { maxEntries: config.git.catfile_cache_size });
  const registry = new Registry();
  const logger = createLogger({ level: "error", component: "gitaly-test" });
  const deps: NodeDeps & { registry: Registry } = {
    locator: new StorageLocator(config.storage),
    git,
    catfile,
    logger,
    config,
    hooks,
    registry,
  };
  const server = new grpc.Server({
    "grpc.max_receive_message_length": 16 * 1024 * 1024,
    "grpc.max_send_message_length": 16 * 1024 * 1024,
  });
  addService(server, SmartHTTPService, smartHttpService(deps));
  addService(server, SSHService, sshService(deps));
  const injector = server.createConnectionInjector(grpc.ServerCredentials.createInsecure());
  const listener = createNetServer({ noDelay: true }, (socket) => {
    socket.on("error", () => {});
    listenmux(socket, { onGrpcConnection: (duplex) => injector.injectConnection(duplex) });
  });
  const address = await listenOn(listener);
  const channels: grpc.Client[] = [];

  return {
    dir,
    address,
    storage: { name: "default", path: storagePath },
    registry,
    config,
    hookCalls,
    hookLog: () => readFileSync(logFile, "utf8").split("\n").filter(Boolean),
    clearHookLog: () => {
      writeFileSync(logFile, "");
      hookCalls.length = 0;
    },
    repository: (relativePath) => ({ storageName: "default", relativePath }),
    channel() {
      const c = new grpc.Client(address, grpc.credentials.createInsecure());
      channels.push(c);
      return c;
    },
    async stop() {
      for (const c of channels) c.close();
      server.forceShutdown();
      injector.destroy();
      await new Promise<void>((resolve) => listener.close(() => resolve()));
      await catfile.close();
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

/** What the proxy sends as the pusher. */
export const PROXY_USER = { glId: "user-42", glUsername: "jane", glRepository: "project-7" };

export interface SmartHttpProxy {
  /** http://127.0.0.1:port; repositories at `<url>/<relative path>`. */
  readonly url: string;
  stop(): Promise<void>;
}

function requestBody(req: IncomingMessage): Readable {
  return req.headers["content-encoding"] === "gzip" ? req.pipe(createGunzip()) : req;
}

function fail(res: ServerResponse, err: unknown): void {
  const e = err as grpc.ServiceError;
  if (!res.headersSent) {
    res.writeHead(e.code === grpc.status.NOT_FOUND ? 404 : 500, { "content-type": "text/plain" });
    res.end(`${e.details ?? e.message}\n`);
  } else {
    res.destroy();
  }
}

/**
 * A git smart HTTP server backed by the node's SmartHTTPService, as Workhorse uses it:
 * info/refs from InfoRefs*, upload-pack bodies over a sidechannel, receive-pack
 * bodies over the PostReceivePack stream.
 */
export async function startSmartHttpProxy(node: TransportNode): Promise<SmartHttpProxy> {
  const client = createClient(SmartHTTPService, node.channel());
  const handle = async (req: IncomingMessage, res: ServerResponse) => {
    const url = new URL(req.url ?? "/", "http://proxy");
    const gitProtocol = String(req.headers["git-protocol"] ?? "");
    const m = /^\/(.+?)\/(info\/refs|git-upload-pack|git-receive-pack)$/.exec(url.pathname);
    if (!m) {
      res.writeHead(404).end();
      return;
    }
    const repository = node.repository(m[1] as string);
    if (m[2] === "info/refs") {
      const service = url.searchParams.get("service");
      const stream =
        service === "git-upload-pack"
          ? client.infoRefsUploadPack({ repository, gitProtocol })
          : service === "git-receive-pack"
            ? client.infoRefsReceivePack({ repository, gitProtocol })
            : undefined;
      if (!stream) {
        res.writeHead(403).end();
        return;
      }
      for await (const msg of stream) {
        if (!res.headersSent) {
          res.writeHead(200, {
            "content-type": `application/x-${service}-advertisement`,
            "cache-control": "no-cache",
          });
        }
        if (!res.write(msg.data)) await new Promise((r) => res.once("drain", r));
      }
      res.end();
      return;
    }
    if (m[2] === "git-upload-pack") {
      const body = requestBody(req);
      const conn = await dialBackchannel(`tcp://${node.address}`);
      try {
        await conn.withSidechannel(
          async (sidechannel) => {
            for await (const chunk of body) await sidechannel.write(chunk as Buffer);
            await sidechannel.closeWrite();
            res.writeHead(200, { "content-type": "application/x-git-upload-pack-result", "cache-control": "no-cache" });
            for await (const chunk of sidechannel.readable) {
              if (!res.write(chunk as Buffer)) await new Promise((r) => res.once("drain", r));
            }
          },
          (metadata) =>
            conn.unary(
              SmartHTTPService.method.postUploadPackWithSidechannel,
              { repository, gitProtocol },
              { metadata },
            ),
        );
        res.end();
      } finally {
        await conn.close();
      }
      return;
    }
    const call = client.postReceivePack();
    const done = new Promise<void>((resolve, reject) => {
      call.on("data", (msg: PostReceivePackResponse) => {
        if (!res.headersSent) {
          res.writeHead(200, {
            "content-type": "application/x-git-receive-pack-result",
            "cache-control": "no-cache",
          });
        }
        if (!res.write(msg.data)) {
          call.pause();
          res.once("drain", () => call.resume());
        }
      });
      call.on("end", resolve);
      call.on("error", reject);
    });
    call.write(create(PostReceivePackRequestSchema, { repository, gitProtocol, ...PROXY_USER }));
    for await (const chunk of requestBody(req)) {
      if (!call.write(create(PostReceivePackRequestSchema, { data: chunk as Buffer }))) {
        await new Promise((r) => call.once("drain", r));
      }
    }
    call.end();
    await done;
    res.end();
  };
  const server = createHttpServer((req, res) => {
    handle(req, res).catch((err: unknown) => fail(res, err));
  });
  const address = await new Promise<string>((resolve) => {
    server.listen(0, "127.0.0.1", () => {
      const a = server.address();
      resolve(a && typeof a !== "string" ? `127.0.0.1:${a.port}` : "");
    });
  });
  return {
    url: `http://${address}`,
    stop: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}
