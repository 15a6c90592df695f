#!/usr/bin/env bash
# Install (or upgrade) the operator into the local cluster with the Helm chart:
# the operator runs as a pod under the local kubelet, with the chart's
# ServiceAccount token and RBAC. Idempotent; waits until the operator is Ready.
#
#   hack/chart-up.sh                  # namespaced scope, watching $NAMESPACE
#   SCOPE=cluster hack/chart-up.sh    # every namespace
#   RESTART=1 hack/chart-up.sh        # restart the operator pod (after changing its code)
#
# The local kubelet runs any …/marketplace-fleet/{operator,node}:<tag> image from
# the checkout's virtualenv (docs/contracts.md), so no image is built or pulled.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
NAMESPACE="${NAMESPACE:-marketplace}"
RELEASE="${RELEASE:-marketplace-operator}"
RELEASE_NAMESPACE="${RELEASE_NAMESPACE:-marketplace-system}"
SCOPE="${SCOPE:-namespaced}"
IMAGES="${IMAGES:-localhost/marketplace-fleet}"
TAG="${TAG:-dev}"

log() { printf '[chart-up] %s\n' "$*" >&2; }

export KUBECONFIG="${KUBECONFIG:-$("$root/hack/cluster.sh" kubeconfig)}"
helm="$("$root/hack/helm.sh")"
kubectl="$(dirname "$KUBECONFIG")/bin/kubectl"
[[ -x "$kubectl" ]] || kubectl=kubectl

"$root/.venv/bin/python" "$root/hack/sync_chart_crds.py" --check

args=(--namespace "$RELEASE_NAMESPACE" --create-namespace --take-ownership
  --set "image.repository=$IMAGES/operator,image.tag=$TAG,image.pullPolicy=IfNotPresent"
  --set "nodeImage.repository=$IMAGES/node,nodeImage.tag=$TAG"
  --set "scope=$SCOPE")
if [[ "$SCOPE" == namespaced ]]; then
  "$kubectl" get namespace "$NAMESPACE" >/dev/null 2>&1 || "$kubectl" create namespace "$NAMESPACE" >/dev/null
  args+=(--set "watchNamespaces={$NAMESPACE}")
fi
log "helm upgrade --install $RELEASE ($SCOPE scope) into $RELEASE_NAMESPACE"
"$helm" upgrade --install "$RELEASE" "$root/charts/marketplace-operator" "${args[@]}" \
  --wait --timeout 3m >/dev/null
if [[ -n "${RESTART:-}" ]]; then
  "$kubectl" -n "$RELEASE_NAMESPACE" rollout restart "deployment/$RELEASE" >/dev/null
fi
"$kubectl" -n "$RELEASE_NAMESPACE" rollout status "deployment/$RELEASE" --timeout=120s >&2
"$kubectl" -n "$RELEASE_NAMESPACE" get pods -l "app.kubernetes.io/instance=$RELEASE" -o wide >&2
