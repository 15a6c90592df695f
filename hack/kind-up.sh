#!/usr/bin/env bash
# For users with Docker: a kind cluster instead of the local one, with this
# project's images loaded and the chart installed. Not testable on machines
# without a Docker engine (like the one this project is developed on).
#
#   hack/kind-up.sh                    # create (or reuse) cluster "marketplace-fleet"
#   KUBECONFIG=$(hack/kind-up.sh kubeconfig) make test-e2e
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
KIND_VERSION="${KIND_VERSION:-v0.33.0}"
CLUSTER_NAME="${KIND_CLUSTER_NAME:-marketplace-fleet}"
cache="${MARKETPLACE_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/marketplace-fleet}"
kind="$cache/kind-$KIND_VERSION/kind"
kubeconfig="$cache/kind-$CLUSTER_NAME.kubeconfig"

log() { printf '[kind] %s\n' "$*" >&2; }

if [[ "${1:-}" == kubeconfig ]]; then echo "$kubeconfig"; exit 0; fi

if ! command -v docker >/dev/null || ! docker info >/dev/null 2>&1; then
  log "kind needs a running Docker engine, and none answers here."
  log "Use the local cluster instead: make cluster (docs/local-cluster.md)."
  exit 1
fi

if [[ ! -x "$kind" ]]; then
  log "installing kind $KIND_VERSION with go install"
  GOBIN="$(dirname "$kind")" go install "sigs.k8s.io/kind@$KIND_VERSION"
fi

if ! "$kind" get clusters 2>/dev/null | grep -qx "$CLUSTER_NAME"; then
  "$kind" create cluster --name "$CLUSTER_NAME" --kubeconfig "$kubeconfig" --wait 120s
else
  "$kind" export kubeconfig --name "$CLUSTER_NAME" --kubeconfig "$kubeconfig"
fi
export KUBECONFIG="$kubeconfig"

if [[ -x "$root/hack/images.sh" ]]; then
  for image in $(IMAGE_BUILDER=docker "$root/hack/images.sh"); do
    log "loading $image"
    "$kind" load docker-image --name "$CLUSTER_NAME" "$image"
  done
else
  log "no hack/images.sh: skipping the images"
fi

chart="$root/charts/marketplace-operator"
if [[ -f "$chart/Chart.yaml" && -x "$root/hack/helm.sh" ]]; then
  helm="$("$root/hack/helm.sh")"
  "$helm" upgrade --install marketplace-operator "$chart" \
    --namespace marketplace-system --create-namespace --wait
else
  log "no chart or helm script yet: skipping the chart"
fi
log "ready: export KUBECONFIG=$kubeconfig"
