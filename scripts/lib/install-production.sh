#!/usr/bin/env bash
# Installs the programs the container image ships, in the layout the image has at /app:
#
#   scripts/lib/install-production.sh SOURCE TARGET
#
# SOURCE is a checkout with a built dist/ (package.json, package-lock.json, dist/); TARGET
# must not exist yet or be empty. The Dockerfile runs this to make /app, and
# test/integration/image/production-layout.test.ts runs it into a temp dir and starts the
# programs from there, so the test checks exactly what the image ships:
#
#   TARGET/package.json, package-lock.json  what npm installed (image scanners read the lock)
#   TARGET/dist/                            the built programs, without dist/local (gitaly-cluster
#                                           runs a local cluster on PostgreSQL binaries the image
#                                           does not have)
#   TARGET/node_modules/                    production dependencies only, without TypeScript
#                                           sources, type declarations and source maps
#   TARGET/bin/<program>                    links to the programs (the image puts bin/ on PATH,
#                                           so `kubectl exec ... praefect -config ... dataloss` works)
#   TARGET/entrypoint                       the image's entry point: runs the program named by
#                                           its first argument
#
# Needs node and npm on PATH, and the npm registry (a warm npm cache is used first: the lock
# pins every version and integrity hash).
set -euo pipefail

# The programs the image runs; their paths come from package.json "bin".
PROGRAMS=(gitaly praefect gitaly-operator)
# Gitaly starts these itself, from next to its own modules, with its own node binary
# (src/gitaly/hooks/runtime.ts, src/gitaly/service/repository/replicate.ts).
HELPERS=(dist/gitaly/hooks/gitaly-hooks.js dist/gitaly/gitaly-ssh.js)

die() {
  printf 'install-production: %s\n' "$*" >&2
  exit 1
}

[ $# -eq 2 ] || die "usage: install-production.sh SOURCE TARGET"
source_dir="$(cd "$1" && pwd)" || die "no such directory: $1"
target_dir="$2"

for f in package.json package-lock.json dist; do
  [ -e "$source_dir/$f" ] || die "$source_dir/$f is missing (build dist/ first: tsc -p tsconfig.build.json)"
done
if [ -e "$target_dir" ] && [ -n "$(ls -A "$target_dir")" ]; then
  die "$target_dir is not empty"
fi
mkdir -p "$target_dir"
target_dir="$(cd "$target_dir" && pwd)"

cp "$source_dir/package.json" "$source_dir/package-lock.json" "$target_dir/"
cp -R "$source_dir/dist" "$target_dir/dist"
rm -rf "$target_dir/dist/local"

# `npm ci` rejects this lock file: it has no entries for other platforms' optional packages,
# which the registry the project uses does not serve (see scripts/lib/toolchain.sh).
# `npm install` installs the lock as it is; had it needed to change the lock, the lock is
# stale, and that fails the install instead of shipping versions nobody reviewed.
cd "$target_dir"
reviewed_lock="$(mktemp)"
trap 'rm -f "$reviewed_lock"' EXIT
cp package-lock.json "$reviewed_lock"
npm install --omit=dev --ignore-scripts --prefer-offline --no-audit --no-fund --no-update-notifier --loglevel=error
if ! cmp -s package-lock.json "$reviewed_lock"; then
  die "package-lock.json does not match package.json; run 'npm install' and commit the lock file"
fi

# Nothing loads these at run time (Node.js does not run TypeScript from node_modules), and
# they are about half of node_modules. Licence texts (LICENSE, LICENSE.md) stay.
find node_modules -type f \( -name '*.ts' -o -name '*.mts' -o -name '*.cts' -o -name '*.map' \) -delete

mkdir bin
for program in "${PROGRAMS[@]}"; do
  main="$(node -e 'const bin = require(process.argv[1]).bin ?? {}; process.stdout.write(bin[process.argv[2]] ?? "")' \
    "$target_dir/package.json" "$program")"
  [ -n "$main" ] || die "package.json has no bin entry for $program"
  [ -f "$main" ] || die "$program: $main is missing from dist/"
  chmod 0755 "$main"
  ln -s "../$main" "bin/$program"
done
for helper in "${HELPERS[@]}"; do
  [ -f "$helper" ] || die "$helper is missing from dist/ (Gitaly runs it)"
done

cat >entrypoint <<EOF
#!/bin/sh
# The image's entry point, written by scripts/lib/install-production.sh. The first
# argument names the program and the rest are its arguments, so a pod spec's
# args: ["gitaly", "serve", "/etc/gitaly/config.toml"] runs gitaly serve <config>.
set -eu
programs="${PROGRAMS[*]}"
usage() {
  printf 'usage: PROGRAM [ARGUMENTS...]\n\nprograms: %s\nRun "PROGRAM --help" for its usage.\n' "\$programs"
}
if [ \$# -eq 0 ]; then
  usage >&2
  exit 2
fi
case "\$1" in
  -h | --help | help)
    usage
    exit 0
    ;;
esac
here="\$(cd "\$(dirname "\$0")" && pwd)"
for program in \$programs; do
  if [ "\$program" = "\$1" ]; then
    shift
    exec "\$here/bin/\$program" "\$@"
  fi
done
printf 'unknown program "%s"; this image runs: %s\n' "\$1" "\$programs" >&2
exit 2
EOF
chmod 0755 entrypoint

# The image runs as an unprivileged user that must read, and must not write, all of this.
chmod -R a+rX,go-w "$target_dir"

for program in "${PROGRAMS[@]}"; do
  ./entrypoint "$program" --help >/dev/null || die "$program --help failed in $target_dir"
done
