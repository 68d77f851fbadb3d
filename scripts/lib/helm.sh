# shellcheck shell=bash
# Sourced by scripts/test after lib/toolchain.sh. The chart's tests (test/integration/helm)
# run the helm CLI; tools/helm/build.sh builds the pinned version from Go modules once per
# machine (minutes cold, cached under $GITALY_OPERATOR_CACHE/helm) and prints its path.
# Building it here, before vitest, keeps a cold build out of the tests' hook timeouts.
ensure_helm() {
  HELM_BIN="$(bash "$REPO_ROOT/tools/helm/build.sh")"
  export HELM_BIN
}
