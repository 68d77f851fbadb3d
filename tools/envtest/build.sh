#!/usr/bin/env bash
# Builds kube-apiserver and etcd from the Go module proxy for the operator's
# integration tests, and prints the directory that holds them.
#
# The binaries are cached outside the repository, keyed by version and by the
# wrapper modules' go.mod/go.sum, so a warm cache costs nothing and a cold build
# happens once per machine. Upstream publishes no installable modules for either
# program (both pin internal modules with replace directives); the wrapper modules in
# kube-apiserver/ and etcd/ pin the published twins instead.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
# shellcheck source=versions.env
source "$here/versions.env"

cache="${GITALY_OPERATOR_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/gitaly-operator}"
key="$(cat "$here"/kube-apiserver/go.mod "$here"/kube-apiserver/go.sum "$here"/etcd/go.mod "$here"/etcd/go.sum | sha256sum | cut -c1-12)"
out="$cache/envtest/k8s-$KUBE_VERSION-etcd-$ETCD_VERSION-$key"

if [ -x "$out/kube-apiserver" ] && [ -x "$out/etcd" ]; then
  echo "$out"
  exit 0
fi

command -v go >/dev/null || { echo "tools/envtest: Go is required to build kube-apiserver and etcd" >&2; exit 1; }
mkdir -p "$out.partial"
start=$(date +%s)
# -mod=readonly: the committed go.sum is the lock file; a build never rewrites it.
export GOFLAGS="${GOFLAGS:-} -mod=readonly -trimpath"
echo "tools/envtest: building etcd $ETCD_VERSION (cached afterwards in $out)" >&2
(cd "$here/etcd" && go build -o "$out.partial/etcd" go.etcd.io/etcd/server/v3) >&2
echo "tools/envtest: building kube-apiserver $KUBE_VERSION (a cold build takes several minutes)" >&2
(cd "$here/kube-apiserver" && go build -o "$out.partial/kube-apiserver" k8s.io/kubernetes/cmd/kube-apiserver) >&2
rm -rf "$out"
mv "$out.partial" "$out"
echo "tools/envtest: built in $(($(date +%s) - start)) s" >&2
echo "$out"
