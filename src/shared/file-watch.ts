// Watches a few small files (tokens, certificates, the config file) for content
// changes. Kubernetes updates mounted Secrets by swapping a symlink, which
// inotify-based watching on the file itself misses, so the files' contents are
// compared: fs.watch on their directories triggers a prompt check, and a poll
// catches whatever the watch missed.
import { createHash } from "node:crypto";
import { type FSWatcher, watch } from "node:fs";
import { readFile } from "node:fs/promises";
import { dirname } from "node:path";

export interface FileWatcher {
  /** Re-reads every file now (e.g. on SIGHUP) and fires onChange if any differs. */
  check(): Promise<void>;
  close(): void;
}

async function digest(path: string): Promise<string> {
  try {
    return createHash("sha256")
      .update(await readFile(path))
      .digest("hex");
  } catch (err) {
    // A file that is briefly missing during a swap is a state, not a failure.
    return `error:${(err as NodeJS.ErrnoException).code ?? "unknown"}`;
  }
}

export function watchFiles(
  paths: string[],
  onChange: (changed: string[]) => void | Promise<void>,
  { intervalMs = 1000 }: { intervalMs?: number } = {},
): FileWatcher {
  const last = new Map<string, string>();
  let checking: Promise<void> | null = null;
  let again = false;
  let closed = false;

  const runCheck = async () => {
    const changed: string[] = [];
    for (const p of paths) {
      const d = await digest(p);
      if (last.get(p) !== d) {
        if (last.has(p)) changed.push(p);
        last.set(p, d);
      }
    }
    if (changed.length > 0 && !closed) await onChange(changed);
  };

  // Checks never overlap; a request during a check schedules one more.
  const check = async (): Promise<void> => {
    if (checking) {
      again = true;
      return checking;
    }
    checking = (async () => {
      do {
        again = false;
        await runCheck();
      } while (again && !closed);
    })().finally(() => {
      checking = null;
    });
    return checking;
  };

  const watchers: FSWatcher[] = [];
  for (const dir of new Set(paths.map((p) => dirname(p)))) {
    try {
      const w = watch(dir, { persistent: false }, () => void check());
      w.on("error", () => w.close());
      watchers.push(w);
    } catch {
      // The poll still covers this directory.
    }
  }
  const timer = setInterval(() => void check(), intervalMs);
  timer.unref();
  // Record the initial contents without firing.
  void check();

  return {
    check,
    close() {
      closed = true;
      clearInterval(timer);
      for (const w of watchers) w.close();
    },
  };
}
