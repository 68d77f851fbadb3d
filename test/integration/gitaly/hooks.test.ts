// The hooks end to end, with real git and real processes: git runs the generated hook
// scripts, which start the hook program (dist/gitaly/hooks/gitaly-hooks.js), which calls
// HookService on the internal socket, which runs custom hooks, asks a fake GitLab
// internal API and votes through a fake Praefect's backchannel.
import { execFile } from "node:child_process";
import { createHash, createHmac } from "node:crypto";
import { chmodSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { createServer as createHttpServer, type Server as HttpServer } from "node:http";
import { createServer as createNetServer, type Server as NetServer } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { create } from "@bufbuild/protobuf";
import * as grpc from "@grpc/grpc-js";
import pino from "pino";
import { afterAll, beforeAll, beforeEach, describe, expect, it } from "vitest";
import { type Repository, RepositorySchema } from "../../../src/gen/shared_pb.js";
import {
  RefTransaction,
  StopTransactionResponseSchema,
  type VoteTransactionRequest,
  VoteTransactionRequest_Phase,
  VoteTransactionResponse_TransactionState,
  VoteTransactionResponseSchema,
} from "../../../src/gen/transaction_pb.js";
import { loadGitalyConfig } from "../../../src/gitaly/config/load.js";
import type { GitalyConfig } from "../../../src/gitaly/config/schema.js";
import { GitCommandFactory } from "../../../src/gitaly/git/command.js";
import { type NodeHooks, startNodeHooks } from "../../../src/gitaly/hooks/internal-server.js";
import { serializeTransactionMetadata, TRANSACTION_METADATA_KEY } from "../../../src/gitaly/hooks/payload.js";
import { listenmux } from "../../../src/gitaly/server/listenmux.js";
import type { HookEnvironment, PushUser } from "../../../src/gitaly/service/deps.js";
import { StorageLocator } from "../../../src/gitaly/storage/locator.js";
import { type BackchannelConnection, dialBackchannel } from "../../../src/shared/grpc/backchannel-client.js";
import { unary } from "../../../src/shared/grpc/handlers.js";
import { addService } from "../../../src/shared/grpc/service.js";
import {
  createEmptyRepository,
  createStandardRepository,
  git,
  isolatedGitEnv,
  type StandardRepository,
} from "../../harness/git-fixtures.js";

const GITLAB_SECRET = "gitlab-shell-secret";
const ZERO_OID = "0".repeat(40);
const logger = pino({ level: "silent" });

let tmp: string;
let storagePath: string;
let source: StandardRepository;
let locator: StorageLocator;
let repoCounter = 0;

function config(runtimeDir: string, extra = ""): GitalyConfig {
  return loadGitalyConfig(
    `listen_addr = "127.0.0.1:0"\nruntime_dir = ${JSON.stringify(runtimeDir)}\n` +
      `[[storage]]\nname = "default"\npath = ${JSON.stringify(storagePath)}\n${extra}`,
  ).config;
}

/** A new empty repository in the storage. */
function newRepository(): { repository: Repository; path: string } {
  repoCounter += 1;
  const relativePath = `project-${repoCounter}.git`;
  const path = join(storagePath, relativePath);
  createEmptyRepository(path);
  return {
    repository: create(RepositorySchema, {
      storageName: "default",
      relativePath,
      glRepository: `project-${repoCounter}`,
      glProjectPath: `group/project-${repoCounter}`,
    }),
    path,
  };
}

function writeHook(path: string, script: string): void {
  mkdirSync(join(path, ".."), { recursive: true });
  writeFileSync(path, `#!/bin/sh\n${script}\n`);
  chmodSync(path, 0o755);
}

function refOf(repoPath: string, ref: string): string | undefined {
  try {
    return git(repoPath, ["rev-parse", "--verify", "--quiet", ref]).trim();
  } catch {
    return undefined;
  }
}

interface GitResult {
  code: number;
  stdout: string;
  stderr: string;
}

/** Runs git asynchronously: the hooks call back into this process, which must stay responsive. */
function runGit(args: string[], env: Record<string, string>, input?: string): Promise<GitResult> {
  return new Promise((resolve) => {
    const child = execFile(
      "git",
      args,
      { env: { ...isolatedGitEnv(), ...env }, maxBuffer: 64 * 1024 * 1024 },
      (err, stdout, stderr) => {
        const code = err ? (typeof err.code === "number" ? err.code : 1) : 0;
        resolve({ code, stdout: String(stdout), stderr: String(stderr) });
      },
    );
    if (input !== undefined) child.stdin?.end(input);
  });
}

/**
 * `git push` from the fixture into `target`, with the hooks environment of a call as a
 * ref-updating RPC would get it. The local transport drops `-c` settings, so the hook
 * configuration goes into the receive-pack command, as Gitaly puts it on its own.
 */
async function pushWithHooks(
  hooks: HookEnvironment,
  call: { metadata: grpc.Metadata; getPeer(): string },
  target: { repository: Repository; path: string },
  refspecs: string[],
  user: PushUser | undefined,
  pushOptions: string[] = [],
): Promise<GitResult> {
  const { env, config: pairs } = await hooks.forCall(call, target.repository, user);
  const settings = [...pairs, { key: "receive.advertisePushOptions", value: "true" }]
    .map((p) => `-c ${p.key}='${p.value}'`)
    .join(" ");
  return runGit(
    [
      "--git-dir",
      source.path,
      "push",
      "--porcelain",
      `--receive-pack=git ${settings} receive-pack`,
      ...pushOptions.flatMap((o) => ["-o", o]),
      target.path,
      ...refspecs,
    ],
    env,
  );
}

const localCall = () => ({ metadata: new grpc.Metadata(), getPeer: () => "ipv4:127.0.0.1:1" });
const pusher = (glRepository: string): PushUser => ({
  glId: "user-42",
  glUsername: "jane",
  glRepository,
  protocol: "http",
});

/** A stand-in for GitLab's internal API that checks the JWT with the shared secret. */
interface FakeGitlab {
  server: HttpServer;
  url: string;
  requests: { path: string; body: Record<string, unknown> }[];
  allowed: { status: number; body: unknown };
  postReceiveMessages: { message: string; type: string }[];
}

async function startFakeGitlab(): Promise<FakeGitlab> {
  const fake: FakeGitlab = {
    server: createHttpServer(),
    url: "",
    requests: [],
    allowed: { status: 200, body: { status: true, message: "" } },
    postReceiveMessages: [],
  };
  fake.server.on("request", (req, res) => {
    const chunks: Buffer[] = [];
    req.on("data", (c: Buffer) => chunks.push(c));
    req.on("end", () => {
      const token = String(req.headers["gitlab-shell-api-request"] ?? "");
      const [header = "", claims = "", signature = ""] = token.split(".");
      const expected = createHmac("sha256", GITLAB_SECRET).update(`${header}.${claims}`).digest("base64url");
      const reply = (status: number, body: unknown) => {
        res.writeHead(status, { "content-type": "application/json" });
        res.end(JSON.stringify(body));
      };
      if (signature !== expected) return reply(401, { message: "401 Unauthorized" });
      const path = (req.url ?? "").replace("/api/v4/internal", "");
      fake.requests.push({ path, body: JSON.parse(Buffer.concat(chunks).toString() || "{}") });
      if (path === "/allowed") return reply(fake.allowed.status, fake.allowed.body);
      if (path === "/pre_receive") return reply(200, { reference_counter_increased: true });
      if (path === "/post_receive") {
        return reply(200, { reference_counter_decreased: true, messages: fake.postReceiveMessages });
      }
      reply(404, { message: "404 Not Found" });
    });
  });
  await new Promise<void>((resolve) => fake.server.listen(0, "127.0.0.1", resolve));
  const address = fake.server.address();
  fake.url = `http://127.0.0.1:${typeof address === "object" && address ? address.port : 0}`;
  return fake;
}

let plainHooks: NodeHooks;
let gitlabHooks: NodeHooks;
let gitlab: FakeGitlab;

beforeAll(async () => {
  tmp = mkdtempSync(join(tmpdir(), "hooks-"));
  storagePath = join(tmp, "storage");
  mkdirSync(storagePath);
  source = createStandardRepository(join(tmp, "source.git"));
  gitlab = await startFakeGitlab();
  const plainConfig = config(join(tmp, "run-plain"));
  locator = new StorageLocator(plainConfig.storage);
  plainHooks = await startNodeHooks({ config: plainConfig, locator, logger });
  gitlabHooks = await startNodeHooks({
    config: config(join(tmp, "run-gitlab"), `[gitlab]\nurl = "${gitlab.url}"\nsecret = "${GITLAB_SECRET}"\n`),
    locator,
    logger,
  });
});

afterAll(async () => {
  await plainHooks?.close();
  await gitlabHooks?.close();
  await new Promise<void>((resolve) => (gitlab ? gitlab.server.close(() => resolve()) : resolve()));
  if (tmp) rmSync(tmp, { recursive: true, force: true });
});

describe("receive hooks through the hook program", () => {
  it("runs the repository's custom pre-receive, update and post-receive hooks with what git gives them", async () => {
    const target = newRepository();
    const out = join(tmp, `record-${repoCounter}`);
    mkdirSync(out);
    // The pre-receive hook proves the pushed objects are readable from the quarantine.
    writeHook(
      join(target.path, "custom_hooks", "pre-receive"),
      `cat > ${out}/pre-receive.stdin
while read old new ref; do git cat-file -t "$new" >> ${out}/pre-receive.types || exit 9; done < ${out}/pre-receive.stdin
env | grep -E '^(GL_|GIT_DIR=|GIT_PUSH_OPTION)' | sort > ${out}/pre-receive.env
echo "pre-receive says hi"`,
    );
    writeHook(join(target.path, "custom_hooks", "update.d", "10-record"), `echo "$@" >> ${out}/update.args`);
    writeHook(join(target.path, "custom_hooks", "update.d", "20-ignored~"), "exit 1");
    writeHook(
      join(target.path, "custom_hooks", "post-receive"),
      `cat > ${out}/post-receive.stdin; echo "all done" >&2`,
    );

    const result = await pushWithHooks(
      plainHooks.environment,
      localCall(),
      target,
      ["refs/heads/main:refs/heads/main", "refs/heads/feature:refs/heads/feature"],
      pusher(target.repository.glRepository),
      ["ci.skip"],
    );
    expect(result.stderr).toContain("remote: pre-receive says hi");
    expect(result.stderr).toContain("remote: all done");
    expect(result.code).toBe(0);

    const main = source.branches.main;
    const feature = source.branches.feature;
    const changes = `${ZERO_OID} ${main} refs/heads/main\n${ZERO_OID} ${feature} refs/heads/feature\n`;
    expect(readFileSync(join(out, "pre-receive.stdin"), "utf8")).toBe(changes);
    expect(readFileSync(join(out, "pre-receive.types"), "utf8")).toBe("commit\ncommit\n");
    expect(readFileSync(join(out, "pre-receive.env"), "utf8")).toBe(
      [
        `GIT_DIR=${target.path}`,
        "GIT_PUSH_OPTION_0=ci.skip",
        "GIT_PUSH_OPTION_COUNT=1",
        "GL_ID=user-42",
        `GL_PROJECT_PATH=${target.repository.glProjectPath}`,
        "GL_PROTOCOL=http",
        `GL_REPOSITORY=${target.repository.glRepository}`,
        "GL_USERNAME=jane",
        "",
      ].join("\n"),
    );
    expect(readFileSync(join(out, "update.args"), "utf8")).toBe(
      `refs/heads/main ${ZERO_OID} ${main}\nrefs/heads/feature ${ZERO_OID} ${feature}\n`,
    );
    expect(readFileSync(join(out, "post-receive.stdin"), "utf8")).toBe(changes);
    expect(refOf(target.path, "refs/heads/main")).toBe(main);
  });

  it("rejects a push when a custom pre-receive hook exits non-zero, with the hook's message", async () => {
    const target = newRepository();
    writeHook(join(target.path, "custom_hooks", "pre-receive"), 'echo "no pushes on fridays" >&2\nexit 1');
    const result = await pushWithHooks(
      plainHooks.environment,
      localCall(),
      target,
      ["refs/heads/main:refs/heads/main"],
      pusher(target.repository.glRepository),
    );
    expect(result.code).not.toBe(0);
    expect(result.stderr).toContain("remote: no pushes on fridays");
    expect(result.stdout).toContain("[remote rejected] (pre-receive hook declined)");
    expect(refOf(target.path, "refs/heads/main")).toBeUndefined();
  });

  it("lets an update hook reject one reference while the others go through", async () => {
    const target = newRepository();
    writeHook(
      join(target.path, "custom_hooks", "update"),
      'if [ "$1" = refs/heads/feature ]; then echo "feature is frozen"; exit 3; fi',
    );
    const result = await pushWithHooks(
      plainHooks.environment,
      localCall(),
      target,
      ["refs/heads/main:refs/heads/main", "refs/heads/feature:refs/heads/feature"],
      pusher(target.repository.glRepository),
    );
    expect(result.stderr).toContain("remote: feature is frozen");
    expect(result.stdout).toContain("refs/heads/feature\t[remote rejected] (hook declined)");
    expect(refOf(target.path, "refs/heads/main")).toBe(source.branches.main);
    expect(refOf(target.path, "refs/heads/feature")).toBeUndefined();
  });

  it("runs global hooks from [hooks] custom_hooks_dir after the repository's own", async () => {
    const globalDir = join(tmp, "global-hooks");
    writeHook(join(globalDir, "pre-receive.d", "policy"), 'echo "global policy says no" >&2\nexit 1');
    const hooks = await startNodeHooks({
      config: config(join(tmp, "run-global"), `[hooks]\ncustom_hooks_dir = ${JSON.stringify(globalDir)}\n`),
      locator,
      logger,
    });
    try {
      const target = newRepository();
      writeHook(join(target.path, "custom_hooks", "pre-receive.d", "a"), 'echo "project hook ran" >&2');
      const result = await pushWithHooks(
        hooks.environment,
        localCall(),
        target,
        ["refs/heads/main:refs/heads/main"],
        pusher(target.repository.glRepository),
      );
      expect(result.code).not.toBe(0);
      // git pads sideband lines with spaces.
      expect(result.stderr).toMatch(/remote: project hook ran\s*\nremote: global policy says no/);
      expect(refOf(target.path, "refs/heads/main")).toBeUndefined();
    } finally {
      await hooks.close();
    }
  });
});

describe("GitLab's internal API", () => {
  beforeEach(() => {
    gitlab.requests.length = 0;
    gitlab.postReceiveMessages = [];
  });

  it("rejects the push with GitLab's message when /allowed denies access", async () => {
    gitlab.allowed = {
      status: 403,
      body: { status: false, message: "You are not allowed to push code to this project." },
    };
    const target = newRepository();
    const result = await pushWithHooks(
      gitlabHooks.environment,
      localCall(),
      target,
      ["refs/heads/main:refs/heads/main"],
      pusher(target.repository.glRepository),
    );
    expect(result.code).not.toBe(0);
    expect(result.stderr).toContain("remote: GitLab: You are not allowed to push code to this project.");
    expect(refOf(target.path, "refs/heads/main")).toBeUndefined();
    expect(gitlab.requests.map((r) => r.path)).toEqual(["/allowed"]);
    const body = gitlab.requests[0]?.body ?? {};
    expect(body).toMatchObject({
      action: "git-receive-pack",
      gl_repository: target.repository.glRepository,
      project: target.path,
      changes: `${ZERO_OID} ${source.branches.main} refs/heads/main\n`,
      protocol: "http",
      relative_path: target.repository.relativePath,
      user_id: "42",
    });
    const env = JSON.parse(String(body.env));
    // git's quarantine directory (named tmp_objdir-incoming-* by git 2.39).
    expect(env.GIT_OBJECT_DIRECTORY_RELATIVE).toMatch(/^objects\/(tmp_objdir-)?incoming-/);
    expect(env.GIT_ALTERNATE_OBJECT_DIRECTORIES_RELATIVE).toEqual(["objects"]);
  });

  it("also shows a denial that comes with status 200", async () => {
    gitlab.allowed = { status: 200, body: { status: false, message: "Branch is protected" } };
    const target = newRepository();
    const result = await pushWithHooks(
      gitlabHooks.environment,
      localCall(),
      target,
      ["refs/heads/main:refs/heads/main"],
      pusher(target.repository.glRepository),
    );
    expect(result.code).not.toBe(0);
    expect(result.stderr).toContain("remote: GitLab: Branch is protected");
    expect(refOf(target.path, "refs/heads/main")).toBeUndefined();
  });

  it("accepts an allowed push, then reports it to /pre_receive and /post_receive and prints GitLab's messages", async () => {
    gitlab.allowed = { status: 200, body: { status: true, message: "" } };
    gitlab.postReceiveMessages = [{ type: "basic", message: "To create a merge request, visit the project" }];
    const target = newRepository();
    const result = await pushWithHooks(
      gitlabHooks.environment,
      localCall(),
      target,
      ["refs/heads/main:refs/heads/main"],
      pusher(target.repository.glRepository),
      ["merge_request.create"],
    );
    expect(result.code).toBe(0);
    expect(result.stderr).toContain("remote: To create a merge request, visit the project");
    expect(refOf(target.path, "refs/heads/main")).toBe(source.branches.main);
    expect(gitlab.requests.map((r) => r.path)).toEqual(["/allowed", "/pre_receive", "/post_receive"]);
    expect(gitlab.requests[0]?.body.push_options).toEqual(["merge_request.create"]);
    expect(gitlab.requests[1]?.body).toEqual({ gl_repository: target.repository.glRepository });
    expect(gitlab.requests[2]?.body).toEqual({
      changes: `${ZERO_OID} ${source.branches.main} refs/heads/main\n`,
      gitaly_client_context_bin: null,
      gl_repository: target.repository.glRepository,
      identifier: "user-42",
      push_options: ["merge_request.create"],
    });
  });

  it("allows pushes without asking anyone when no GitLab is configured", async () => {
    const target = newRepository();
    const result = await pushWithHooks(
      plainHooks.environment,
      localCall(),
      target,
      ["refs/heads/main:refs/heads/main"],
      { glId: "", glUsername: "", glRepository: "", protocol: "ssh" },
    );
    expect(result.code).toBe(0);
    expect(refOf(target.path, "refs/heads/main")).toBe(source.branches.main);
    expect(gitlab.requests).toEqual([]);
  });
});

describe("reference transactions", () => {
  interface Vote {
    id: bigint;
    node: string;
    phase: VoteTransactionRequest_Phase;
    hash: string;
  }
  const votes: Vote[] = [];
  const stops: bigint[] = [];
  let answer: (vote: VoteTransactionRequest) => VoteTransactionResponse_TransactionState = () =>
    VoteTransactionResponse_TransactionState.COMMIT;

  let hooks: NodeHooks;
  let gitalyServer: grpc.Server;
  let listener: NetServer;
  let praefect: grpc.Server;
  let conn: BackchannelConnection;
  const gitFactory = new GitCommandFactory();

  /** Test RPCs on the "Gitaly" side that update references the way services will. */
  function registerProbe(server: grpc.Server): void {
    const raw = (b: Buffer) => b;
    server.register(
      "/test.Probe/UpdateRef",
      (call: grpc.ServerUnaryCall<Buffer, Buffer>, callback: grpc.sendUnaryData<Buffer>) => {
        (async () => {
          const req = JSON.parse(call.request.toString()) as { relativePath: string; stdin: string };
          const repository = create(RepositorySchema, { storageName: "default", relativePath: req.relativePath });
          const { env, config: pairs } = await hooks.environment.forCall(call, repository);
          const repoPath = locator.repositoryPath(repository);
          try {
            await gitFactory.run({
              repoPath,
              subcommand: "update-ref",
              flags: ["--stdin"],
              stdin: req.stdin,
              env,
              config: pairs,
            });
            return { code: 0, stderr: "" };
          } catch (err) {
            return { code: 1, stderr: (err as { stderr?: string }).stderr ?? String(err) };
          }
        })().then(
          (res) => callback(null, Buffer.from(JSON.stringify(res))),
          (err: Error) => callback({ code: grpc.status.INTERNAL, details: err.message }),
        );
      },
      raw,
      raw,
      "unary",
    );
    server.register(
      "/test.Probe/Push",
      (call: grpc.ServerUnaryCall<Buffer, Buffer>, callback: grpc.sendUnaryData<Buffer>) => {
        const req = JSON.parse(call.request.toString()) as { relativePath: string; refspecs: string[] };
        const repository = create(RepositorySchema, {
          storageName: "default",
          relativePath: req.relativePath,
          glRepository: "project-x",
        });
        pushWithHooks(
          hooks.environment,
          call,
          { repository, path: locator.repositoryPath(repository) },
          req.refspecs,
          pusher("project-x"),
        ).then(
          (res) => callback(null, Buffer.from(JSON.stringify(res))),
          (err: Error) => callback({ code: grpc.status.INTERNAL, details: err.message }),
        );
      },
      raw,
      raw,
      "unary",
    );
  }

  async function probe(
    method: "UpdateRef" | "Push",
    body: unknown,
    tx?: { id: bigint; primary: boolean },
  ): Promise<GitResult> {
    const metadata: Record<string, string> = {};
    if (tx) metadata[TRANSACTION_METADATA_KEY] = serializeTransactionMetadata({ ...tx, node: "gitaly-1" });
    const { response } = await conn.unaryRaw(`/test.Probe/${method}`, Buffer.from(JSON.stringify(body)), { metadata });
    return JSON.parse(Buffer.from(response).toString()) as GitResult;
  }

  const sha1 = (text: string) => createHash("sha1").update(text).digest("hex");

  beforeAll(async () => {
    hooks = await startNodeHooks({ config: config(join(tmp, "run-tx")), locator, logger });

    gitalyServer = new grpc.Server();
    registerProbe(gitalyServer);
    const injector = gitalyServer.createConnectionInjector(grpc.ServerCredentials.createInsecure());
    listener = createNetServer((socket) =>
      listenmux(socket, { onGrpcConnection: (d) => injector.injectConnection(d) }),
    );
    await new Promise<void>((resolve) => listener.listen(0, "127.0.0.1", resolve));
    const address = listener.address();
    const port = typeof address === "object" && address ? address.port : 0;

    // The fake Praefect serves RefTransaction on the streams Gitaly opens back to it.
    praefect = new grpc.Server();
    addService(praefect, RefTransaction, {
      voteTransaction: unary(async (req) => {
        votes.push({
          id: req.transactionId,
          node: req.node,
          phase: req.phase,
          hash: Buffer.from(req.referenceUpdatesHash).toString("hex"),
        });
        return create(VoteTransactionResponseSchema, { state: answer(req) });
      }),
      stopTransaction: unary(async (req) => {
        stops.push(req.transactionId);
        return create(StopTransactionResponseSchema, {});
      }),
    });
    const praefectInjector = praefect.createConnectionInjector(grpc.ServerCredentials.createInsecure());
    conn = await dialBackchannel(`127.0.0.1:${port}`, {
      onServerStream: (stream) => praefectInjector.injectConnection(stream),
    });
  });

  afterAll(async () => {
    await conn?.close();
    praefect?.forceShutdown();
    gitalyServer?.forceShutdown();
    await new Promise<void>((resolve) => (listener ? listener.close(() => resolve()) : resolve()));
    await hooks?.close();
  });

  beforeEach(() => {
    votes.length = 0;
    stops.length = 0;
    answer = () => VoteTransactionResponse_TransactionState.COMMIT;
  });

  it("votes SHA-1 of the hook's stdin in the prepared and committed phases", async () => {
    const target = newRepository();
    const oid = source.commits.second;
    git(target.path, ["fetch", "--quiet", source.path, `${oid}:refs/tmp/x`]);
    git(target.path, ["update-ref", "-d", "refs/tmp/x"]);

    const result = await probe(
      "UpdateRef",
      { relativePath: target.repository.relativePath, stdin: `update refs/heads/voted ${oid}\n` },
      { id: 7n, primary: true },
    );
    expect(result).toEqual({ code: 0, stderr: "" });
    const expected = sha1(`${ZERO_OID} ${oid} refs/heads/voted\n`);
    expect(votes).toEqual([
      { id: 7n, node: "gitaly-1", phase: VoteTransactionRequest_Phase.PREPARED_PHASE, hash: expected },
      { id: 7n, node: "gitaly-1", phase: VoteTransactionRequest_Phase.COMMITTED_PHASE, hash: expected },
    ]);
    expect(refOf(target.path, "refs/heads/voted")).toBe(oid);
  });

  it("fails the reference update when the transaction is aborted", async () => {
    answer = () => VoteTransactionResponse_TransactionState.ABORT;
    const target = newRepository();
    const oid = source.commits.second;
    git(target.path, ["fetch", "--quiet", source.path, `${oid}:refs/heads/base`]);

    const result = await probe(
      "UpdateRef",
      { relativePath: target.repository.relativePath, stdin: `update refs/heads/voted ${oid}\n` },
      { id: 8n, primary: true },
    );
    expect(result.code).toBe(1);
    expect(result.stderr).toContain("error executing git hook");
    expect(votes.map((v) => v.phase)).toEqual([VoteTransactionRequest_Phase.PREPARED_PHASE]);
    expect(refOf(target.path, "refs/heads/voted")).toBeUndefined();
  });

  it("does not vote, nor run the reference-transaction hook, outside a transaction", async () => {
    const target = newRepository();
    const oid = source.commits.second;
    git(target.path, ["fetch", "--quiet", source.path, `${oid}:refs/heads/base`]);
    const result = await probe("UpdateRef", {
      relativePath: target.repository.relativePath,
      stdin: `update refs/heads/plain ${oid}\n`,
    });
    expect(result).toEqual({ code: 0, stderr: "" });
    expect(votes).toEqual([]);
    expect(refOf(target.path, "refs/heads/plain")).toBe(oid);
  });

  it("on a secondary skips the receive hooks but casts their synchronizing votes", async () => {
    const target = newRepository();
    writeHook(join(target.path, "custom_hooks", "pre-receive"), 'echo "primary only" >&2\nexit 1');
    const result = await probe(
      "Push",
      { relativePath: target.repository.relativePath, refspecs: ["refs/heads/main:refs/heads/main"] },
      { id: 9n, primary: false },
    );
    expect(result.code).toBe(0);
    const main = source.branches.main;
    // HEAD points at the branch, so git's transaction also carries HEAD's (log-only) update.
    const change = sha1(`${ZERO_OID} ${main} refs/heads/main\n${ZERO_OID} ${main} HEAD\n`);
    expect(votes.map((v) => [v.phase, v.hash])).toEqual([
      [VoteTransactionRequest_Phase.SYNCHRONIZED_PHASE, sha1("synchronize pre-receive hook")],
      [VoteTransactionRequest_Phase.SYNCHRONIZED_PHASE, sha1("synchronize update hook")],
      [VoteTransactionRequest_Phase.PREPARED_PHASE, change],
      [VoteTransactionRequest_Phase.COMMITTED_PHASE, change],
      [VoteTransactionRequest_Phase.SYNCHRONIZED_PHASE, sha1("synchronize post-receive hook")],
    ]);
    expect(refOf(target.path, "refs/heads/main")).toBe(main);
  });

  it("on the primary stops the transaction when a receive hook rejects the push", async () => {
    const target = newRepository();
    writeHook(join(target.path, "custom_hooks", "pre-receive"), 'echo "primary says no" >&2\nexit 1');
    const result = await probe(
      "Push",
      { relativePath: target.repository.relativePath, refspecs: ["refs/heads/main:refs/heads/main"] },
      { id: 10n, primary: true },
    );
    expect(result.code).not.toBe(0);
    expect(result.stderr).toContain("remote: primary says no");
    expect(stops).toEqual([10n]);
    expect(votes).toEqual([]);
    expect(refOf(target.path, "refs/heads/main")).toBeUndefined();
  });
});
