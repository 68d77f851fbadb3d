import { createHmac } from "node:crypto";
import { createServer, type IncomingHttpHeaders, type Server } from "node:http";
import { afterAll, beforeAll, beforeEach, describe, expect, it } from "vitest";
import { loadGitalyConfig } from "../config/load.js";
import { type AllowedParams, allowedRequestBody, GitlabApiError, GitlabHttpClient, glIdFields } from "./client.js";

const SECRET = "shell-secret";

interface Seen {
  url: string | undefined;
  headers: IncomingHttpHeaders;
  body: unknown;
}

let server: Server;
let port = 0;
const seen: Seen[] = [];
let reply: { status: number; contentType?: string; body: string } = { status: 200, body: "{}" };

function verifyJwt(token: string): boolean {
  const [header = "", claims = "", signature = ""] = token.split(".");
  const expected = createHmac("sha256", SECRET).update(`${header}.${claims}`).digest("base64url");
  const parsed = JSON.parse(Buffer.from(claims, "base64url").toString()) as { iss: string; exp: number };
  return signature === expected && parsed.iss === "gitlab-shell" && parsed.exp * 1000 > Date.now();
}

beforeAll(async () => {
  server = createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on("data", (c: Buffer) => chunks.push(c));
    req.on("end", () => {
      const text = Buffer.concat(chunks).toString();
      seen.push({ url: req.url, headers: req.headers, body: text === "" ? undefined : JSON.parse(text) });
      if (!verifyJwt(String(req.headers["gitlab-shell-api-request"] ?? ""))) {
        res.writeHead(401, { "content-type": "application/json" });
        res.end('{"message":"401 Unauthorized"}');
        return;
      }
      res.writeHead(
        reply.status,
        reply.contentType === "" ? {} : { "content-type": reply.contentType ?? "application/json" },
      );
      res.end(reply.body);
    });
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const address = server.address();
  port = typeof address === "object" && address ? address.port : 0;
});

afterAll(async () => {
  await new Promise<void>((resolve) => server.close(() => resolve()));
});

beforeEach(() => {
  seen.length = 0;
});

function client(secret = SECRET): GitlabHttpClient {
  const { config } = loadGitalyConfig(
    `listen_addr = "127.0.0.1:0"\n[[storage]]\nname = "default"\npath = "/tmp"\n[gitlab]\nurl = "http://127.0.0.1:${port}/"\nsecret = "${secret}"\n`,
  );
  return new GitlabHttpClient(config, { secret, userAgent: "gitaly/test" });
}

const params: AllowedParams = {
  repoPath: "/storage/it's.git",
  relativePath: "it's.git",
  gitObjectDirectory: "objects/incoming-abc",
  gitAlternateObjectDirectories: ["objects"],
  glRepository: "project-7",
  glId: "user-42",
  protocol: "http",
  changes: "a b refs/heads/main\n",
  pushOptions: [],
};

describe("GitLab internal API client", () => {
  it("posts /allowed with upstream's body and a signed JWT", async () => {
    reply = { status: 200, body: '{"status":true,"message":""}' };
    await expect(client().allowed(params, { remoteIp: "10.1.2.3" })).resolves.toEqual({ allowed: true, message: "" });
    expect(seen).toHaveLength(1);
    expect(seen[0]?.url).toBe("/api/v4/internal/allowed");
    expect(seen[0]?.headers["user-agent"]).toBe("gitaly/test");
    expect(seen[0]?.headers["x-forwarded-for"]).toBe("10.1.2.3");
    expect(seen[0]?.body).toEqual({
      action: "git-receive-pack",
      gl_repository: "project-7",
      project: "/storage/its.git",
      changes: "a b refs/heads/main\n",
      protocol: "http",
      relative_path: "it's.git",
      env: '{"GIT_ALTERNATE_OBJECT_DIRECTORIES_RELATIVE":["objects"],"GIT_OBJECT_DIRECTORY_RELATIVE":"objects/incoming-abc"}',
      user_id: "42",
    });
  });

  it("reports a denial, and GitLab's error messages, as upstream words them", async () => {
    reply = { status: 200, body: '{"status":false,"message":"You are not allowed to push code to this project."}' };
    await expect(client().allowed(params)).resolves.toEqual({
      allowed: false,
      message: "You are not allowed to push code to this project.",
    });
    reply = { status: 403, body: '{"status":false,"message":"Push denied"}' };
    await expect(client().allowed(params)).rejects.toThrow(new GitlabApiError("Push denied"));
    reply = { status: 500, body: "<html>oops</html>" };
    await expect(client().allowed(params)).rejects.toThrow("Internal API error (500)");
    await expect(client("wrong").allowed(params)).rejects.toThrow("401 Unauthorized");
    reply = { status: 200, contentType: "text/html", body: "<html>" };
    await expect(client().allowed(params)).rejects.toThrow(
      "/allowed endpoint respond with unsupported content type: text/html",
    );
    reply = { status: 204, body: "" };
    await expect(client().allowed(params)).rejects.toThrow("gitlab api is not accessible: 204");
    reply = { status: 429, body: "{}" };
    await expect(client().allowed(params)).rejects.toThrow("rate limited");
  });

  it("says GitLab is unreachable when nothing listens", async () => {
    const { config } = loadGitalyConfig(
      `listen_addr = "127.0.0.1:0"\n[[storage]]\nname = "default"\npath = "/tmp"\n[gitlab]\nurl = "http+unix:///nonexistent/gitlab.socket"\nsecret = "s"\n`,
    );
    await expect(new GitlabHttpClient(config, { secret: "s" }).allowed(params)).rejects.toThrow(
      "Internal API unreachable",
    );
  });

  it("calls /pre_receive and /post_receive", async () => {
    reply = { status: 200, body: '{"reference_counter_increased":true}' };
    await expect(client().preReceive("project-7")).resolves.toBe(true);
    expect(seen[0]?.body).toEqual({ gl_repository: "project-7" });

    reply = {
      status: 200,
      body: '{"reference_counter_decreased":true,"messages":[{"message":"hi","type":"basic"}]}',
    };
    await expect(
      client().postReceive({ glRepository: "project-7", glId: "key-1", changes: "c", pushOptions: ["ci.skip"] }),
    ).resolves.toEqual({ decreased: true, messages: [{ message: "hi", type: "basic" }] });
    expect(seen[1]?.url).toBe("/api/v4/internal/post_receive");
    expect(seen[1]?.body).toEqual({
      changes: "c",
      gitaly_client_context_bin: null,
      gl_repository: "project-7",
      identifier: "key-1",
      push_options: ["ci.skip"],
    });

    reply = { status: 503, body: '{"message":"maintenance"}' };
    await expect(client().preReceive("p")).rejects.toThrow(
      "http post to gitlab api /pre_receive endpoint: maintenance",
    );
  });
});

describe("gl_id", () => {
  it("maps the prefix to username, key_id or user_id", () => {
    expect(glIdFields("username-jane")).toEqual({ username: "jane" });
    expect(glIdFields("key-12")).toEqual({ key_id: "12" });
    expect(glIdFields("user-7")).toEqual({ user_id: "7" });
    expect(() => glIdFields("user-x")).toThrow('setting gl_id: gl_id="user-x" is invalid');
    expect(() => glIdFields("7")).toThrow("is invalid");
  });

  it("leaves empty fields out of /allowed", () => {
    const body = allowedRequestBody({ ...params, relativePath: "", pushOptions: [], glId: "username-jane" });
    expect(body).not.toHaveProperty("relative_path");
    expect(body).not.toHaveProperty("push_options");
    expect(body.username).toBe("jane");
  });
});
