#!/usr/bin/env bash
# kind end-to-end: a real Kubernetes cluster in containers. Creates a kind cluster, builds
# and loads the image, installs the chart, applies the minimal sample, waits for Ready,
# clones and pushes through a port-forward and the local HTTP gateway, deletes the Gitaly pod
# holding the repository's primary and keeps pushing, rotates the tokens, and uninstalls.
#
# Needs a container engine (docker or podman). Without one it says so and exits 0: a skip,
# which the test summary does not count as a pass.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/../../scripts/lib/toolchain.sh"
cd "$REPO_ROOT"

engine=""
for candidate in docker podman; do
  if command -v "$candidate" >/dev/null 2>&1 && "$candidate" info >/dev/null 2>&1; then
    engine="$candidate"
    break
  fi
done
if [ -z "$engine" ]; then
  echo "kind e2e skipped: no container engine"
  exit 0
fi

KIND_VERSION="${KIND_VERSION:-v0.30.0}"
KUBECTL_VERSION="${KUBECTL_VERSION:-v1.34.1}"
CLUSTER="${KIND_CLUSTER:-gitaly-e2e}"
NAMESPACE=gitaly-e2e
IMAGE="gitaly-operator:e2e"
SAMPLE=config/samples/minimal.yaml
NAME=minimal
BIN="$GITALY_OPERATOR_CACHE/e2e/bin"
WORK="$(mktemp -d -t kind-e2e-XXXXXX)"
mkdir -p "$BIN"

ensure_node
ensure_node_modules
source "$REPO_ROOT/scripts/lib/helm.sh"
ensure_helm

# kind from Go modules (Go is on the machine for test tools); kubectl as a pinned release.
if [ ! -x "$BIN/kind-$KIND_VERSION" ]; then
  log "building kind $KIND_VERSION"
  GOBIN="$WORK/gobin" go install "sigs.k8s.io/kind@$KIND_VERSION"
  mv "$WORK/gobin/kind" "$BIN/kind-$KIND_VERSION"
fi
if [ ! -x "$BIN/kubectl-$KUBECTL_VERSION" ]; then
  log "downloading kubectl $KUBECTL_VERSION"
  curl -fsSLo "$BIN/kubectl-$KUBECTL_VERSION" "https://dl.k8s.io/release/$KUBECTL_VERSION/bin/linux/amd64/kubectl"
  chmod +x "$BIN/kubectl-$KUBECTL_VERSION"
fi
kind() { KIND_EXPERIMENTAL_PROVIDER="$engine" "$BIN/kind-$KIND_VERSION" "$@"; }
kubectl() { "$BIN/kubectl-$KUBECTL_VERSION" --context "kind-$CLUSTER" "$@"; }

pids=()
cleanup() {
  local code=$?
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  if [ "${KEEP_CLUSTER:-}" = "" ]; then kind delete cluster --name "$CLUSTER" >/dev/null 2>&1 || true; fi
  rm -rf "$WORK"
  [ $code -eq 0 ] && echo "kind e2e passed" || echo "kind e2e FAILED (exit $code)"
}
trap cleanup EXIT

log "creating kind cluster $CLUSTER"
kind create cluster --name "$CLUSTER" --wait 120s
log "building $IMAGE"
"$engine" build -t "$IMAGE" --build-arg REVISION="$(git rev-parse HEAD 2>/dev/null || echo dev)" .
kind load docker-image "$IMAGE" --name "$CLUSTER"

log "installing the chart"
"$HELM_BIN" install gitaly-operator charts/gitaly-operator --kube-context "kind-$CLUSTER" \
  --namespace gitaly-operator --create-namespace \
  --set image.repository=gitaly-operator --set image.tag=e2e --set image.pullPolicy=Never \
  --set gitalyImage="$IMAGE" --wait --timeout 5m

kubectl create namespace "$NAMESPACE"
kubectl -n "$NAMESPACE" apply -f "$SAMPLE"
log "waiting for $NAME to be Ready"
kubectl -n "$NAMESPACE" wait "gitalycluster/$NAME" --for=condition=Ready --timeout=10m

# What GitLab would read: the client Secret.
kubectl -n "$NAMESPACE" get secret "$NAME-gitaly-client" -o jsonpath='{.data.token}' | base64 -d >"$WORK/token"
kubectl -n "$NAMESPACE" get secret "$NAME-gitaly-client" -o jsonpath='{.data.ca\.crt}' | base64 -d >"$WORK/ca.crt"
chmod 600 "$WORK/token"

kubectl -n "$NAMESPACE" port-forward "svc/$NAME-praefect" 13305:3305 >"$WORK/port-forward.log" 2>&1 &
pids+=($!)
node dist/local/main.js gateway --listen 127.0.0.1:18181 --upstream tls://127.0.0.1:13305 \
  --tls-ca-file "$WORK/ca.crt" --tls-server-name "$NAME-praefect.$NAMESPACE.svc" \
  --token-file "$WORK/token" --create-on-push >"$WORK/gateway.log" 2>&1 &
pids+=($!)
sleep 3

push() {
  git -C "$WORK/repo" -c user.name=e2e -c user.email=e2e@example.com commit -q --allow-empty -m "$1"
  git -C "$WORK/repo" push -q origin HEAD:main
}
git init -q -b main "$WORK/repo"
git -C "$WORK/repo" remote add origin http://127.0.0.1:18181/e2e/project.git
push "first"
git clone -q http://127.0.0.1:18181/e2e/project.git "$WORK/clone"
log "clone and push work"

# Fail over: delete the Gitaly pod that holds the primary replica, keep pushing.
primary="$(kubectl -n "$NAMESPACE" exec "deploy/$NAME-praefect" -- \
  praefect -config /etc/praefect/config/config.toml metadata -virtual-storage default -relative-path e2e/project.git \
  | sed -n 's/^Primary: "\(.*\)"$/\1/p' | head -1)"
log "deleting the primary's pod ${primary:-$NAME-gitaly-0}"
kubectl -n "$NAMESPACE" delete pod "${primary:-$NAME-gitaly-0}" --wait=false
for i in 1 2 3 4 5; do
  until push "after failover $i"; do sleep 2; done
done
log "pushes continue after the primary's pod was deleted"

# Rotate both tokens; the gateway follows the client Secret like GitLab would.
kubectl -n "$NAMESPACE" patch "gitalycluster/$NAME" --type merge -p '{"spec":{"auth":{"rotation":{"generation":1}}}}'
for _ in $(seq 1 120); do
  kubectl -n "$NAMESPACE" get secret "$NAME-gitaly-client" -o jsonpath='{.data.token}' | base64 -d >"$WORK/token.next"
  cmp -s "$WORK/token" "$WORK/token.next" || cp "$WORK/token.next" "$WORK/token"
  phase="$(kubectl -n "$NAMESPACE" get "gitalycluster/$NAME" -o jsonpath='{.status.auth.phase}/{.status.auth.generation}')"
  [ "$phase" = "Stable/1" ] && break
  push "during rotation" || { echo "push failed during the rotation"; exit 1; }
  sleep 5
done
[ "$phase" = "Stable/1" ] || { echo "rotation did not finish: $phase"; exit 1; }
log "tokens rotated without a failed push"

"$HELM_BIN" uninstall gitaly-operator --kube-context "kind-$CLUSTER" --namespace gitaly-operator --wait
log "uninstalled"
