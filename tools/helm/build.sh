#!/usr/bin/env bash
# Builds the helm CLI from the Go module proxy for the chart's checks
# (test/integration/helm), and prints the path of the binary.
#
# get.helm.sh is not reachable from every machine that runs the tests, while the Go
# module proxy is (tools/envtest needs it too), so helm is built from its published
# module, pinned by the wrapper module in this directory. The binary is cached outside
# the repository, keyed by version and by go.mod/go.sum: a warm cache costs nothing.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
# shellcheck source=versions.env
source "$here/versions.env"

cache="${GITALY_OPERATOR_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/gitaly-operator}"
key="$(cat "$here/go.mod" "$here/go.sum" | sha256sum | cut -c1-12)"
out="$cache/helm/$HELM_VERSION-$key"

if [ -x "$out/helm" ]; then
  echo "$out/helm"
  exit 0
fi

command -v go >/dev/null || { echo "tools/helm: Go is required to build helm" >&2; exit 1; }
# -mod=readonly: the committed go.sum is the lock file; a build never rewrites it.
export GOFLAGS="${GOFLAGS:-} -mod=readonly -trimpath"
cd "$here"
pinned="$(go list -m -f '{{.Version}}' helm.sh/helm/v3)"
if [ "$pinned" != "$HELM_VERSION" ]; then
  echo "tools/helm: versions.env says $HELM_VERSION but go.mod pins helm $pinned" >&2
  exit 1
fi
# What `make build` in helm's repository stamps in: the version, and the Kubernetes
# version helm assumes without a cluster (client-go v0.X -> 1.X). Without the latter,
# `helm template` and `helm lint` assume v1.20 and reject kubeVersion: ">=1.29".
client_go="$(go list -m -f '{{.Version}}' k8s.io/client-go)"
k8s_minor="$(echo "$client_go" | cut -d. -f2)"
ldflags="-s -w -X helm.sh/helm/v3/internal/version.version=$HELM_VERSION -X helm.sh/helm/v3/internal/version.gitTreeState=clean"
for pkg in helm.sh/helm/v3/pkg/lint/rules helm.sh/helm/v3/pkg/chartutil; do
  ldflags+=" -X $pkg.k8sVersionMajor=1 -X $pkg.k8sVersionMinor=$k8s_minor"
done

mkdir -p "$cache/helm"
partial="$(mktemp -d "$out.partial-XXXXXX")"
trap 'rm -rf "$partial"' EXIT
start=$(date +%s)
echo "tools/helm: building helm $HELM_VERSION (cached afterwards in $out)" >&2
CGO_ENABLED=0 go build -ldflags "$ldflags" -o "$partial/helm" helm.sh/helm/v3/cmd/helm >&2
# A concurrent build may have finished first: keep its result.
mv -T "$partial" "$out" 2>/dev/null || [ -x "$out/helm" ]
echo "tools/helm: built in $(($(date +%s) - start)) s" >&2
echo "$out/helm"
