# shellcheck shell=bash
# Sourced by the project's commands. Puts the pinned Node.js on PATH and makes sure
# node_modules matches package-lock.json. Everything slow is cached outside the
# repository, under $GITALY_OPERATOR_CACHE (default ~/.cache/gitaly-operator).
set -euo pipefail

REPO_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
export REPO_ROOT
export GITALY_OPERATOR_CACHE="${GITALY_OPERATOR_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/gitaly-operator}"

log() { printf '%s\n' "[$(basename "$0")] $*" >&2; }

# Node.js: the machine ships an end-of-life Node, so the project brings its own. The
# official binary is published on the npm registry as node-linux-<arch>; `npm pack`
# fetches it with the registry's integrity check, and it is unpacked once per version.
ensure_node() {
  local version arch dir tmp
  version="$(tr -d '[:space:]' <"$REPO_ROOT/.node-version")"
  case "$(uname -m)" in
    x86_64) arch=x64 ;;
    aarch64 | arm64) arch=arm64 ;;
    *) log "unsupported CPU architecture $(uname -m)"; return 1 ;;
  esac
  dir="$GITALY_OPERATOR_CACHE/node/$version-linux-$arch"
  if [ ! -x "$dir/bin/node" ]; then
    log "installing Node.js $version into $dir"
    tmp="$(mktemp -d)"
    (cd "$tmp" && npm pack --silent "node-linux-$arch@$version" >/dev/null)
    mkdir -p "$tmp/unpacked"
    tar -xzf "$tmp"/node-linux-*.tgz -C "$tmp/unpacked"
    mkdir -p "$(dirname "$dir")"
    rm -rf "$dir"
    mv "$tmp/unpacked/package" "$dir"
    rm -rf "$tmp"
  fi
  export PATH="$dir/bin:$PATH"
  local got
  got="$(node --version)"
  if [ "$got" != "v$version" ]; then
    log "expected Node.js v$version on PATH, got $got"
    return 1
  fi
}

# node_modules is reinstalled only when package-lock.json changed since the last install.
# `npm ci` is not usable here: the registry this project can reach has no builds of
# other platforms' optional packages (e.g. @biomejs/cli-darwin-arm64), so the lock file
# cannot list them and `npm ci` rejects it as out of sync. `npm install` honours the
# lock file as it is; if it would have to change the lock, the lock is stale, which
# fails the run instead of silently installing something else.
lock_hash() {
  node -e 'const c=require("node:crypto"),f=require("node:fs");process.stdout.write(c.createHash("sha256").update(f.readFileSync(process.argv[1])).update(process.version).digest("hex"))' "$REPO_ROOT/package-lock.json"
}
ensure_node_modules() {
  local stamp="$REPO_ROOT/node_modules/.lock-hash" want
  want="$(lock_hash)"
  if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$want" ]; then
    log "installing npm dependencies"
    (cd "$REPO_ROOT" && npm install --no-audit --no-fund --loglevel=error)
    if [ "$(lock_hash)" != "$want" ]; then
      log "package-lock.json does not match package.json; run 'npm install' and commit the lock file"
      return 1
    fi
    printf '%s' "$want" >"$stamp"
  fi
  export PATH="$REPO_ROOT/node_modules/.bin:$PATH"
}

# PostgreSQL: tests and the local cluster start throwaway servers from the system's
# binaries (initdb, pg_ctl, postgres). Debian's packages provide them; on a machine
# without them, install them the same way.
ensure_postgres() {
  if find_pg_bindir >/dev/null; then return 0; fi
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    log "installing PostgreSQL server binaries from Debian packages"
    DEBIAN_FRONTEND=noninteractive apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql >/dev/null
  fi
  find_pg_bindir >/dev/null || { log "PostgreSQL server binaries not found; install PostgreSQL (initdb, pg_ctl) or set PG_BINDIR"; return 1; }
}

find_pg_bindir() {
  if [ -n "${PG_BINDIR:-}" ] && [ -x "$PG_BINDIR/initdb" ]; then echo "$PG_BINDIR"; return 0; fi
  local d
  for d in $(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V -r); do
    if [ -x "$d/initdb" ] && [ -x "$d/postgres" ]; then echo "$d"; return 0; fi
  done
  if command -v initdb >/dev/null && command -v postgres >/dev/null; then dirname "$(command -v initdb)"; return 0; fi
  return 1
}

# git: the product spawns the real git.
ensure_git() {
  command -v git >/dev/null && return 0
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    DEBIAN_FRONTEND=noninteractive apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq git >/dev/null
  fi
  command -v git >/dev/null || { log "git not found"; return 1; }
}
