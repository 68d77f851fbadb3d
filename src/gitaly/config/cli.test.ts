import { createHmac } from "node:crypto";
import { mkdir, mkdtemp, rm, writeFile } from "node:fs/promises";
import { createServer, type IncomingMessage, type Server } from "node:http";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Writable } from "node:stream";
import { afterAll, beforeAll, describe, expect, test } from "vitest";
import { runCheck, runConfigurationValidate } from "./cli.js";
import { signGitlabShellJwt } from "./gitlab-check.js";

class Capture extends Writable {
  text = "";
  override _write(chunk: Buffer, _encoding: BufferEncoding, callback: (error?: Error | null) => void): void {
    this.text += chunk.toString("utf8");
    callback();
  }
}

async function validate(input: string): Promise<{ code: number; out: string; err: string }> {
  const out = new Capture();
  const err = new Capture();
  const code = await runConfigurationValidate(input, out, err);
  return { code, out: out.text, err: err.text };
}

async function check(path: string): Promise<{ code: number; out: string; err: string }> {
  const out = new Capture();
  const err = new Capture();
  const code = await runCheck(path, out, err, { userAgent: "gitaly/test" });
  return { code, out: out.text, err: err.text };
}

let dir: string;
let storage: string;

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), "gitaly-config-cli-"));
  storage = join(dir, "storage");
  await mkdir(storage);
});

afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
});

function goodConfig(extra = ""): string {
  return `listen_addr = "127.0.0.1:0"\n[[storage]]\nname = "default"\npath = "${storage}"\n${extra}\n`;
}

describe("runConfigurationValidate", () => {
  test("exits 0 silently for a valid configuration", async () => {
    expect(await validate(goodConfig())).toEqual({ code: 0, out: "", err: "" });
  });

  test("prints a syntax error with its position and exits 2", async () => {
    const result = await validate('listen_addr = "127.0.0.1:0\n');
    expect(result.code).toBe(2);
    expect(result.err).toBe("");
    const parsed = JSON.parse(result.out) as { errors: { key?: string[]; message: string }[] };
    expect(parsed.errors).toHaveLength(1);
    expect(parsed.errors[0]?.key).toBeUndefined();
    expect(parsed.errors[0]?.message).toMatch(/^line 1 column \d+: toml: /);
  });

  test("names each bad key in upstream's JSON format", async () => {
    const input = `listen_addr = "127.0.0.1:0"\ngraceful_restart_timeout = "bad value"\n[[storage]]\nname = ""\npath = "${storage}"\n[[git.config]]\nkey = "bad"\n`;
    const result = await validate(input);
    expect(result.code).toBe(2);
    expect(result.out).toBe(`{
  "errors": [
    {
      "key": [
        "graceful_restart_timeout"
      ],
      "message": "time: invalid duration \\"bad value\\""
    },
    {
      "key": [
        "storage",
        "[0]",
        "name"
      ],
      "message": "not set"
    },
    {
      "key": [
        "git",
        "config",
        "[0]",
        "key"
      ],
      "message": "key \\"bad\\" must contain at least one section"
    }
  ]
}
`);
  });

  test("reports what the configuration names on disk, like upstream", async () => {
    const missing = join(dir, "missing-storage");
    const result = await validate(`socket_path = "/tmp/g.sock"\n[[storage]]\nname = "default"\npath = "${missing}"\n`);
    expect(result.code).toBe(2);
    expect(JSON.parse(result.out)).toEqual({
      errors: [{ key: ["storage", "[0]", "path"], message: `doesn't exist: "${missing}"` }],
    });
  });

  test("warns about unknown keys on stderr without failing", async () => {
    const result = await validate(goodConfig('[auth]\ntokn = "x"'));
    expect(result).toEqual({ code: 0, out: "", err: "warning: auth.tokn: unknown key, ignored\n" });
  });
});

interface SeenRequest {
  url: string | undefined;
  headers: IncomingMessage["headers"];
}

function listen(server: Server, target: string | { port: number; host: string }): Promise<void> {
  return new Promise((resolveListen, reject) => {
    server.once("error", reject);
    if (typeof target === "string") server.listen(target, () => resolveListen());
    else server.listen(target.port, target.host, () => resolveListen());
  });
}

function close(server: Server): Promise<void> {
  return new Promise((resolveClose) => server.close(() => resolveClose()));
}

/** A stand-in for GitLab's internal API that verifies the JWT the way GitLab does. */
function fakeGitlab(secret: string, seen: SeenRequest[], status = 200): Server {
  return createServer((req, res) => {
    seen.push({ url: req.url, headers: req.headers });
    const token = String(req.headers["gitlab-shell-api-request"] ?? "");
    const [header = "", claims = "", signature = ""] = token.split(".");
    const expected = createHmac("sha256", secret).update(`${header}.${claims}`).digest("base64url");
    if (signature !== expected || status !== 200) {
      res.writeHead(status === 200 ? 401 : status, { "content-type": "application/json" });
      res.end('{"message":"401 Unauthorized"}');
      return;
    }
    res.writeHead(200, { "content-type": "application/json" });
    res.end(
      JSON.stringify({ api_version: "v4", gitlab_version: "18.0.0-test", gitlab_revision: "abc123", redis: true }),
    );
  });
}

describe("runCheck", () => {
  test("needs a config path", async () => {
    const result = await check("");
    expect(result.code).toBe(2);
    expect(result.err).toContain("error: invalid argument(s)");
  });

  test("fails with every problem of an invalid config file", async () => {
    const path = join(dir, "invalid.toml");
    await writeFile(path, `[[storage]]\nname = ""\npath = "${storage}"\n`);
    const result = await check(path);
    expect(result.code).toBe(1);
    expect(result.err).toBe(
      `loading configuration "${path}": invalid config:\n` +
        `  storage[0].name: not set\n` +
        `  none of "socket_path", "listen_addr" or "tls_listen_addr" is set\n`,
    );
  });

  test("fails when what the config names on disk is wrong", async () => {
    const path = join(dir, "env.toml");
    const missing = join(dir, "nowhere");
    await writeFile(path, `listen_addr = ":0"\n[[storage]]\nname = "default"\npath = "${missing}"\n`);
    const result = await check(path);
    expect(result.code).toBe(1);
    expect(result.out).toBe("Checking configuration: FAILED\n");
    expect(result.err).toBe(`invalid config "${path}":\n  storage[0].path: doesn't exist: "${missing}"\n`);
  });

  test("skips the GitLab API check, and says so, when gitlab.url is not set", async () => {
    const path = join(dir, "no-gitlab.toml");
    await writeFile(path, goodConfig());
    expect(await check(path)).toEqual({
      code: 0,
      out: "Checking configuration: OK\nChecking GitLab API access: SKIPPED (gitlab.url is not set)\n",
      err: "",
    });
  });

  describe("against a GitLab internal API", () => {
    const secret = "0123456789abcdef";
    const seen: SeenRequest[] = [];
    let tcp: Server;
    let port: number;
    let unix: Server;
    let socketPath: string;
    let secretFile: string;

    beforeAll(async () => {
      secretFile = join(dir, ".gitlab_shell_secret");
      await writeFile(secretFile, `${secret}\n`);
      tcp = fakeGitlab(secret, seen);
      await listen(tcp, { port: 0, host: "127.0.0.1" });
      const address = tcp.address();
      if (address === null || typeof address === "string") throw new Error("no TCP address");
      port = address.port;
      socketPath = join(dir, "workhorse.socket");
      unix = fakeGitlab(secret, seen);
      await listen(unix, socketPath);
    });

    afterAll(async () => {
      await close(tcp);
      await close(unix);
    });

    test("calls /api/v4/internal/check with a signed JWT and basic auth, and prints GitLab's answer", async () => {
      seen.length = 0;
      const path = join(dir, "gitlab-http.toml");
      await writeFile(
        path,
        goodConfig(
          `[gitlab]\nurl = "http://127.0.0.1:${port}/"\nsecret_file = "${secretFile}"\n[gitlab.http-settings]\nuser = "u"\npassword = "p"`,
        ),
      );
      const result = await check(path);
      expect(result).toEqual({
        code: 0,
        out:
          "Checking configuration: OK\n" +
          "Checking GitLab API access: OK\n" +
          "GitLab version: 18.0.0-test\n" +
          "GitLab revision: abc123\n" +
          "GitLab Api version: v4\n" +
          "Redis reachable for GitLab: true\n" +
          "OK\n",
        err: "",
      });
      expect(seen).toHaveLength(1);
      expect(seen[0]?.url).toBe("/api/v4/internal/check");
      expect(seen[0]?.headers.authorization).toBe(`Basic ${Buffer.from("u:p").toString("base64")}`);
      expect(seen[0]?.headers["user-agent"]).toBe("gitaly/test");
      const claims = JSON.parse(
        Buffer.from(String(seen[0]?.headers["gitlab-shell-api-request"]).split(".")[1] ?? "", "base64url").toString(),
      ) as { iss: string; iat: number; exp: number };
      expect(claims.iss).toBe("gitlab-shell");
      expect(claims.exp - claims.iat).toBe(60);
    });

    test("reaches GitLab over http+unix with the relative URL root", async () => {
      seen.length = 0;
      const path = join(dir, "gitlab-unix.toml");
      const url = `http+unix://${encodeURIComponent(socketPath)}`;
      await writeFile(
        path,
        goodConfig(`[gitlab]\nurl = "${url}"\nrelative_url_root = "/gitlab/"\nsecret = "${secret}"`),
      );
      const result = await check(path);
      expect(result.code).toBe(0);
      expect(result.out).toContain("GitLab version: 18.0.0-test\n");
      expect(seen[0]?.url).toBe("/gitlab/api/v4/internal/check");
    });

    test("reports a rejected secret as a failed check", async () => {
      const path = join(dir, "gitlab-wrong-secret.toml");
      await writeFile(path, goodConfig(`[gitlab]\nurl = "http://127.0.0.1:${port}"\nsecret = "wrong"`));
      expect(await check(path)).toEqual({
        code: 1,
        out: "Checking configuration: OK\nChecking GitLab API access: FAILED\n",
        err: "Check HTTP request failed with status: 401\n",
      });
    });

    test("reports an unreachable GitLab as a failed check", async () => {
      const closed = createServer();
      await listen(closed, { port: 0, host: "127.0.0.1" });
      const address = closed.address();
      if (address === null || typeof address === "string") throw new Error("no TCP address");
      await close(closed);
      const path = join(dir, "gitlab-down.toml");
      await writeFile(path, goodConfig(`[gitlab]\nurl = "http://127.0.0.1:${address.port}"\nsecret = "${secret}"`));
      const result = await check(path);
      expect(result.code).toBe(1);
      expect(result.err).toMatch(/^HTTP GET to GitLab endpoint \/check failed: .*ECONNREFUSED/);
    });
  });
});

describe("signGitlabShellJwt", () => {
  test("signs iss/exp/iat with HS256 over the trimmed secret", () => {
    const token = signGitlabShellJwt(" secret\n", 1_700_000_000);
    const [header = "", claims = "", signature = ""] = token.split(".");
    expect(JSON.parse(Buffer.from(header, "base64url").toString())).toEqual({ alg: "HS256", typ: "JWT" });
    expect(JSON.parse(Buffer.from(claims, "base64url").toString())).toEqual({
      iss: "gitlab-shell",
      exp: 1_700_000_060,
      iat: 1_700_000_000,
    });
    expect(signature).toBe(createHmac("sha256", "secret").update(`${header}.${claims}`).digest("base64url"));
  });
});
