// The upstream's auth token, read from a file and re-read whenever the file changes,
// so a rotation (a new file written and renamed into place, or a Kubernetes secret's
// symlink swap) takes effect on the next request without a restart. A stat per
// request is cheap next to the RPC it precedes; watching would miss symlink swaps.
import { readFile, stat } from "node:fs/promises";

export class TokenFile {
  readonly path: string;
  private cached: { key: string; token: string } | undefined;
  private loading: Promise<string> | undefined;

  constructor(path: string) {
    this.path = path;
  }

  /** The current token (surrounding whitespace removed); "" means auth is off. */
  async token(): Promise<string> {
    let key: string;
    try {
      const st = await stat(this.path);
      key = `${st.ino}:${st.size}:${st.mtimeMs}:${st.ctimeMs}`;
    } catch (err) {
      throw new Error(`reading token file ${this.path}: ${(err as Error).message}`);
    }
    if (this.cached?.key === key) return this.cached.token;
    // Concurrent requests after a change share one read.
    this.loading ??= this.load(key).finally(() => {
      this.loading = undefined;
    });
    return this.loading;
  }

  private async load(key: string): Promise<string> {
    let text: string;
    try {
      text = await readFile(this.path, "utf8");
    } catch (err) {
      throw new Error(`reading token file ${this.path}: ${(err as Error).message}`);
    }
    const token = text.trim();
    this.cached = { key, token };
    return token;
  }
}
