// Which git smart HTTP request a URL is, and for which repository. Pure: no I/O.
//
// Git clients ask for `<repo URL>/info/refs?service=...`, then POST to
// `<repo URL>/git-upload-pack` or `<repo URL>/git-receive-pack`. The repository's
// relative path (as Gitaly knows it) is the URL path before those suffixes, without
// the leading "/", ".git" included, the way GitLab's disk paths look
// (`group/project.git`). A URL without ".git" gets it appended, as GitLab does for
// `https://host/group/project` remotes.

export type GitService = "git-upload-pack" | "git-receive-pack";

export type GitRoute =
  | { kind: "info-refs"; service: GitService; relativePath: string }
  | { kind: "upload-pack"; relativePath: string }
  | { kind: "receive-pack"; relativePath: string };

export interface RouteError {
  kind: "error";
  status: number;
  message: string;
}

const SUFFIXES: { suffix: string; method: string; route: "info-refs" | "upload-pack" | "receive-pack" }[] = [
  { suffix: "/info/refs", method: "GET", route: "info-refs" },
  { suffix: "/git-upload-pack", method: "POST", route: "upload-pack" },
  { suffix: "/git-receive-pack", method: "POST", route: "receive-pack" },
];

function isGitService(value: string | null): value is GitService {
  return value === "git-upload-pack" || value === "git-receive-pack";
}

/** The relative path for a URL path prefix ("/group/project.git"), or why it is not a safe one. */
export function relativePathFor(prefix: string): { relativePath: string } | { error: string } {
  let decoded: string;
  try {
    // Only the URL's own leading "/" goes; an encoded one ("%2F") would make the path absolute.
    decoded = decodeURIComponent(prefix.replace(/^\//, "")).replace(/\/+$/, "");
  } catch {
    return { error: "malformed percent-encoding in the repository path" };
  }
  if (decoded === "" || decoded === ".git") return { error: "missing repository path" };
  const segments = decoded.split("/");
  // Gitaly rejects traversal too; refusing here gives the client a clear 400 instead.
  if (segments.some((s) => s === "" || s === "." || s === "..") || decoded.includes("\0")) {
    return { error: `invalid repository path ${JSON.stringify(decoded)}` };
  }
  return { relativePath: decoded.endsWith(".git") ? decoded : `${decoded}.git` };
}

/** Parses a request line (method and URL as sent, path plus query) into a route. */
export function parseGitRoute(method: string | undefined, rawUrl: string | undefined): GitRoute | RouteError {
  let url: URL;
  try {
    url = new URL(rawUrl ?? "/", "http://gateway.invalid");
  } catch {
    return { kind: "error", status: 400, message: "malformed request URL" };
  }
  const match = SUFFIXES.find((s) => url.pathname.endsWith(s.suffix));
  if (!match) return { kind: "error", status: 404, message: `not a git smart HTTP URL: ${url.pathname}` };
  if (method !== match.method) {
    return { kind: "error", status: 405, message: `${match.suffix.slice(1)} expects ${match.method}, got ${method}` };
  }
  const path = relativePathFor(url.pathname.slice(0, -match.suffix.length));
  if ("error" in path) return { kind: "error", status: 400, message: path.error };
  const { relativePath } = path;
  if (match.route !== "info-refs") return { kind: match.route, relativePath };
  const service = url.searchParams.get("service");
  if (!isGitService(service)) {
    // Without ?service= the client wants the dumb protocol, which Gitaly cannot serve.
    return {
      kind: "error",
      status: 403,
      message: `unsupported service ${JSON.stringify(service)}: only smart HTTP (git-upload-pack, git-receive-pack) is served`,
    };
  }
  return { kind: "info-refs", service, relativePath };
}
