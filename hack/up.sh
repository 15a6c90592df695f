#!/usr/bin/env bash
# `make up`, once the cluster runs: install the CRDs, start the operator in the background
# (watching $NAMESPACE only, so end-to-end tests can run their own operators side by side),
# apply the sample fleet from examples/, wait until every MarketplaceNode is Ready, show them.
#
#   hack/up.sh              # idempotent: an operator already running is kept
#   RESTART=1 hack/up.sh    # restart the operator (e.g. after changing its code)
#
# The operator's PID is recorded in $CLUSTER_DIR/pids/operator.pid (the format of
# hack/cluster.sh: "pid starttime") and its log is $CLUSTER_DIR/operator/operator.log.
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
dir="${CLUSTER_DIR:-$root/.cluster}"
NAMESPACE="${NAMESPACE:-marketplace}"
READY_TIMEOUT="${READY_TIMEOUT:-180}"
LIVENESS_PORT="${OPERATOR_LIVENESS_PORT:-8080}"
METRICS_PORT="${OPERATOR_METRICS_PORT:-9090}"
pidfile="$dir/pids/operator.pid"
opdir="$dir/operator"

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

log "installing CRDs"
for f in "$root"/crds/*.yaml; do k apply --server-side --force-conflicts -f "$f" >/dev/null; done
for f in "$root"/crds/*.yaml; do
  k wait --for=condition=Established --timeout=60s -f "$f" >/dev/null
done

k get namespace "$NAMESPACE" >/dev/null 2>&1 || k create namespace "$NAMESPACE" >/dev/null

[[ -n "${RESTART:-}" ]] && stop_operator
mkdir -p "$opdir" "$(dirname "$pidfile")"
if alive; then
  log "operator already running (pid $(cut -d' ' -f1 "$pidfile"))"
else
  log "starting the operator for namespace $NAMESPACE (log: $opdir/operator.log)"
  KUBECONFIG="$KUBECONFIG" setsid "$root/.venv/bin/marketplace-operator" \
    --namespace "$NAMESPACE" \
    --liveness "http://127.0.0.1:$LIVENESS_PORT/healthz" \
    --metrics-port "$METRICS_PORT" \
    >>"$opdir/operator.log" 2>&1 </dev/null &
  pid=$!
  start=""
  for _ in 1 2 3 4 5; do start="$(starttime "$pid")"; [[ -n "$start" ]] && break; sleep 0.05; done
  echo "$pid $start" >"$pidfile"
  cp "$pidfile" "$opdir/operator.pid"
  deadline=$((SECONDS + 60))
  until curl -fsS "http://127.0.0.1:$LIVENESS_PORT/healthz" >/dev/null 2>&1; do
    alive || { tail -n 30 "$opdir/operator.log" >&2; die "the operator exited"; }
    ((SECONDS < deadline)) || die "the operator is not live after 60s (log: $opdir/operator.log)"
    sleep 0.3
  done
fi

log "applying examples/ to namespace $NAMESPACE"
k apply -n "$NAMESPACE" -f "$root/examples/" >/dev/null
log "waiting (at most ${READY_TIMEOUT}s) until every MarketplaceNode is Ready"
if ! k wait --for=condition=Ready mnode --all -n "$NAMESPACE" --timeout="${READY_TIMEOUT}s" >/dev/null; then
  k get mnode -n "$NAMESPACE" -o wide >&2 || true
  die "not all MarketplaceNodes became Ready (operator log: $opdir/operator.log)"
fi
k get mnode -n "$NAMESPACE" -o wide
cat <<EOF2

  export KUBECONFIG=$KUBECONFIG
  kubectl get mnode -n $NAMESPACE          # the fleet; 'hack/cluster.sh down' stops it all
EOF2
