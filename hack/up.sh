#!/usr/bin/env bash
# `make up`, once the cluster runs: install the operator with the Helm chart (CRDs, RBAC,
# the operator as a pod under the local kubelet with its own ServiceAccount token; watching
# $NAMESPACE only, so end-to-end tests can run their own operators side by side), apply
# the sample fleet from examples/, wait until every MarketplaceNode is Ready, show them.
#
#   hack/up.sh              # idempotent: helm upgrade --install
#   RESTART=1 hack/up.sh    # restart the operator pod (e.g. after changing its code)
#
# Operator log: kubectl -n marketplace-system logs deploy/marketplace-operator
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
dir="${CLUSTER_DIR:-$root/.cluster}"
NAMESPACE="${NAMESPACE:-marketplace}"
READY_TIMEOUT="${READY_TIMEOUT:-180}"
pidfile="$dir/pids/operator.pid"  # an operator process started by an older `make up`

log() { printf '[up] %s\n' "$*" >&2; }
die() { log "ERROR: $*"; exit 1; }

export KUBECONFIG="$("$root/hack/cluster.sh" kubeconfig)"
[[ -f "$KUBECONFIG" ]] || die "no cluster: run 'make cluster' (hack/cluster.sh up) first"
kubectl="$dir/bin/kubectl"
[[ -x "$kubectl" ]] || kubectl="kubectl"
k() { "$kubectl" "$@"; }

starttime() { sed 's/^.*) //' "/proc/$1/stat" 2>/dev/null | awk '{print $20}'; }
alive() {
  local pid start
  [[ -f "$pidfile" ]] || return 1
  read -r pid start <"$pidfile" || return 1
  [[ -n "$pid" && "$(starttime "$pid")" == "$start" ]]
}
stop_operator() {
  alive || return 0
  local pid; read -r pid _ <"$pidfile"
  log "stopping the operator (pid $pid)"
  kill -TERM -- "-$pid" 2>/dev/null || kill -TERM "$pid" 2>/dev/null || true
  for _ in $(seq 1 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.2; done
  kill -KILL -- "-$pid" 2>/dev/null || true
  rm -f "$pidfile"
}

# The operator runs as a pod under the local kubelet, installed by the Helm chart with
# its own ServiceAccount token and RBAC (namespaced scope, watching $NAMESPACE only);
# the chart also installs and upgrades the CRDs. RESTART=1 restarts the pod.
stop_operator  # it would act beside the pod
log "installing the operator with the chart into namespace $NAMESPACE"
NAMESPACE="$NAMESPACE" RESTART="${RESTART:-}" "$root/hack/chart-up.sh"

log "applying examples/ to namespace $NAMESPACE"
k apply -n "$NAMESPACE" -f "$root/examples/" >/dev/null
log "waiting (at most ${READY_TIMEOUT}s) until every MarketplaceNode is Ready"
if ! k wait --for=condition=Ready mnode --all -n "$NAMESPACE" --timeout="${READY_TIMEOUT}s" >/dev/null; then
  k get mnode -n "$NAMESPACE" -o wide >&2 || true
  die "not all MarketplaceNodes became Ready (operator log: kubectl -n marketplace-system logs deploy/marketplace-operator)"
fi
k get mnode -n "$NAMESPACE" -o wide
cat <<EOF2

  export KUBECONFIG=$KUBECONFIG
  kubectl get mnode -n $NAMESPACE          # the fleet; 'hack/cluster.sh down' stops it all
EOF2
