#!/usr/bin/env bash
# The local Kubernetes cluster: etcd, kube-apiserver, kube-controller-manager,
# kube-scheduler (built by hack/build-k8s.sh) and our local kubelet, all on
# loopback, with certificates made here by openssl. docs/local-cluster.md.
#
#   hack/cluster.sh up          # start what is not running; wait for /readyz and Ready nodes
#   hack/cluster.sh down        # stop every process it recorded (and the pods' processes)
#   hack/cluster.sh status      # which recorded processes are alive
#   hack/cluster.sh restart-kubelet  # pick up kubelet changes; running pods are adopted
#   hack/cluster.sh kubeconfig  # print the admin kubeconfig's absolute path
#   hack/cluster.sh nodes       # the local Nodes' names, one a line
#   hack/cluster.sh stop-kubelet NODE  # kill one Node's kubelet (its pods run on, unmanaged)
#   hack/cluster.sh stop-node NODE     # lose one Node: its kubelet and its pods' processes
#   hack/cluster.sh start-node NODE    # start one Node's kubelet again; wait until Ready
#   hack/cluster.sh signal COMPONENT SIG   # signal a control-plane component (etcd,
#                                          # kube-apiserver, ...); after KILL, `up` restarts it
#   hack/cluster.sh restart COMPONENT      # stop one control-plane component, start it again
#   hack/cluster.sh signal-pod NS/POD SIG  # signal a pod's processes (KILL, STOP, CONT): faults
#                                          # for the chaos suite (docs/local-cluster.md)
#
# NODES=N (default 3, then what the cluster last had) local kubelets, each its own Node
# in its own zone with its own slice of POD_CIDR (docs/local-cluster.md).
# Several clusters can run side by side: set CLUSTER_DIR and the ports below.
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
dir="${CLUSTER_DIR:-$root/.cluster}"
mkdir -p "$dir"
dir="$(cd "$dir" && pwd)"
API_PORT="${API_PORT:-6443}"
ETCD_PORT="${ETCD_PORT:-2379}"
ETCD_PEER_PORT="${ETCD_PEER_PORT:-2380}"
KCM_PORT="${KCM_PORT:-10257}"
SCHEDULER_PORT="${SCHEDULER_PORT:-10259}"
KUBELET_PORT="${KUBELET_PORT:-10250}"
NODE_NAME="${NODE_NAME:-local-node}"
# Local Nodes: the first is $NODE_NAME, the others $NODE_NAME-2 ...; kubelet ports
# KUBELET_PORT, KUBELET_PORT+1, ... (the real-kubelet Node takes the next one).
NODES="${NODES:-$(cat "$dir/node-count" 2>/dev/null || echo 3)}"
MAX_NODES=16
# Pods get loopback IPs from POD_CIDR. Unset, each cluster derives its /16 from
# its directory's path (127.N.0.0/16, N in 16..254), whichever checkout it is
# in, and keeps it (recorded in $dir/pod-cidr). `up` claims the range in a
# machine-wide registry: a derived range held by another running cluster moves
# to the next free N; a POD_CIDR set by hand that another running cluster
# holds is refused. So pods of side-by-side clusters never share an address.
POD_CIDR_GIVEN="${POD_CIDR:-}"
POD_CIDR="${POD_CIDR:-$(cat "$dir/pod-cidr" 2>/dev/null || true)}"
# POD_NETWORK=netns (default): a network namespace per pod, one veth each on this
# cluster's CNI bridge $pod_bridge, addresses from POD_CIDR with 127. read as 10.
# (hack/local_kubelet/netns.py; docs/local-cluster.md), so pods bind 0.0.0.0 as on any
# cluster. POD_NETWORK=loopback: pods share the host's network namespace, each with a
# loopback address; the node farm's default (SIMULATE_NODES: thousands of pods that run
# no process need no namespace), and what a machine that cannot make a network
# namespace falls back to, saying so (POD_NETWORK=netns set by hand fails there
# instead). Kept like NODES.
POD_NETWORK_GIVEN="${POD_NETWORK:-}"
if [[ -z "${POD_NETWORK:-}" && -n "${SIMULATE_NODES:-}" ]]; then POD_NETWORK=loopback; fi
POD_NETWORK="${POD_NETWORK:-$(cat "$dir/pod-network" 2>/dev/null || echo netns)}"
pod_hash="$(printf %s "$dir" | sha256sum | cut -c1-8)"
pod_bridge="mfp-$pod_hash" netns_prefix="mf-$pod_hash"
pod_cidrs="${MARKETPLACE_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/marketplace-fleet}/pod-cidrs"
# The real kubelet starts crash back-off at 10 s; 1 s keeps the dev loop and tests quick.
KUBELET_INITIAL_BACKOFF_SECONDS="${KUBELET_INITIAL_BACKOFF_SECONDS:-1}"
SERVICE_CIDR=10.96.0.0/12
SERVICE_IP=10.96.0.1
UP_TIMEOUT="${UP_TIMEOUT:-120}"

pki="$dir/pki" logs="$dir/logs" pids="$dir/pids"
kubeconfig="$dir/kubeconfig"

log() { printf '[cluster] %s\n' "$*" >&2; }
die() { log "ERROR: $*"; exit 1; }

ensure_debian_packages() {
  local missing=()
  command -v openssl >/dev/null || missing+=(openssl)
  command -v unshare >/dev/null || missing+=(util-linux)
  command -v nsenter >/dev/null || missing+=(util-linux)
  command -v mount >/dev/null || missing+=(mount)
  command -v curl >/dev/null || missing+=(curl)
  command -v findmnt >/dev/null || missing+=(util-linux)
  # The chaos suite's wall-clock jump preloads it into one node (tests/e2e/chaos.py).
  dpkg -s libfaketime >/dev/null 2>&1 || missing+=(libfaketime)
  if [[ "$POD_NETWORK" == netns ]]; then  # hack/local_kubelet/netns.py, proxy.py
    command -v ip >/dev/null || missing+=(iproute2)
    command -v iptables >/dev/null || missing+=(iptables)
    [[ -x /usr/lib/cni/bridge && -x /usr/lib/cni/host-local ]] || missing+=(containernetworking-plugins)
  fi
  if ((${#missing[@]})); then
    log "installing Debian packages: ${missing[*]}"
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
  fi
}

# --- certificates -------------------------------------------------------------

# sign NAME SUBJECT EXTENSIONS: a key and a certificate signed by the cluster CA
# (or by the front-proxy CA when CA=front-proxy-ca).
sign() {
  local name="$1" subject="$2" ext="$3" ca="${CA:-ca}"
  [[ -f "$pki/$name.crt" ]] && return 0
  openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$pki/$name.key" 2>/dev/null
  openssl req -new -key "$pki/$name.key" -subj "$subject" -out "$pki/$name.csr" 2>/dev/null
  printf '%s\n' "$ext" >"$pki/$name.ext"
  openssl x509 -req -in "$pki/$name.csr" -CA "$pki/$ca.crt" -CAkey "$pki/$ca.key" \
    -CAcreateserial -days 3650 -sha256 -extfile "$pki/$name.ext" -out "$pki/$name.crt" 2>/dev/null
  rm -f "$pki/$name.csr" "$pki/$name.ext"
}

make_ca() {
  local name="$1" cn="$2"
  [[ -f "$pki/$name.crt" ]] && return 0
  openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$pki/$name.key" 2>/dev/null
  openssl req -x509 -new -key "$pki/$name.key" -subj "/CN=$cn" -days 3650 -sha256 \
    -addext "basicConstraints=critical,CA:TRUE" -addext "keyUsage=critical,keyCertSign,cRLSign" \
    -out "$pki/$name.crt" 2>/dev/null
}

# The extensions of client and serving certificates (also hack/real-node.sh's).
client="basicConstraints=CA:FALSE
keyUsage=critical,digitalSignature,keyEncipherment
extendedKeyUsage=clientAuth"
server="basicConstraints=CA:FALSE
keyUsage=critical,digitalSignature,keyEncipherment
extendedKeyUsage=serverAuth"

make_pki() {
  mkdir -p "$pki" && chmod 700 "$pki"
  make_ca ca marketplace-fleet-local-ca
  make_ca front-proxy-ca marketplace-fleet-front-proxy-ca
  sign apiserver "/CN=kube-apiserver" "$server
subjectAltName=IP:127.0.0.1,IP:$SERVICE_IP,DNS:localhost,DNS:kubernetes,DNS:kubernetes.default,DNS:kubernetes.default.svc,DNS:kubernetes.default.svc.cluster.local"
  sign admin "/O=system:masters/CN=kubernetes-admin" "$client"
  sign controller-manager "/CN=system:kube-controller-manager" "$client"
  sign scheduler "/CN=system:kube-scheduler" "$client"
  sign apiserver-kubelet-client "/O=kube-apiserver-kubelet-client/CN=kube-apiserver-kubelet-client" "$client"
  CA=front-proxy-ca sign front-proxy-client "/CN=front-proxy-client" "$client"
  if [[ ! -f "$pki/sa.key" ]]; then
    openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:2048 -out "$pki/sa.key" 2>/dev/null
    openssl pkey -in "$pki/sa.key" -pubout -out "$pki/sa.pub" 2>/dev/null
  fi
}

# write_kubeconfig FILE CERT-NAME USER: a kubeconfig with embedded credentials.
write_kubeconfig() {
  local file="$1" cert="$2" user="$3"
  [[ -f "$file" ]] && return 0
  cat >"$file.tmp" <<EOF
apiVersion: v1
kind: Config
clusters:
- name: local
  cluster:
    server: https://127.0.0.1:$API_PORT
    certificate-authority-data: $(base64 -w0 "$pki/ca.crt")
users:
- name: $user
  user:
    client-certificate-data: $(base64 -w0 "$pki/$cert.crt")
    client-key-data: $(base64 -w0 "$pki/$cert.key")
contexts:
- name: $user@local
  context: {cluster: local, user: $user}
current-context: $user@local
EOF
  chmod 600 "$file.tmp" && mv "$file.tmp" "$file"
}

make_kubeconfigs() {
  write_kubeconfig "$kubeconfig" admin admin
  write_kubeconfig "$pki/controller-manager.kubeconfig" controller-manager system:kube-controller-manager
  write_kubeconfig "$pki/scheduler.kubeconfig" scheduler system:kube-scheduler
}

# node_vars I: the name, port, zone, pod range and paths of local Node I (1-based). The
# first keeps the paths of the one-Node layout, so a running older cluster is adopted.
node_vars() {
  local i="$1" letters=abcdefghijklmnop
  if ((i == 1)); then
    node="$NODE_NAME" cert=kubelet node_dir="$dir" node_pids="$pids/pods"
    kubelet_pid="$pids/kubelet.pid"
  else
    node="$NODE_NAME-$i" cert="kubelet-$NODE_NAME-$i" node_dir="$dir/nodes/$NODE_NAME-$i"
    node_pids="$pids/pods/$NODE_NAME-$i" kubelet_pid="$pids/kubelet-$NODE_NAME-$i.pid"
  fi
  node_port=$((KUBELET_PORT + i - 1))
  node_zone="zone-${letters:i-1:1}"
  node_index="$i"
}

# pod_range: the cluster's pod addresses: POD_CIDR, under netns moved out of loopback.
pod_range() {
  if [[ "$POD_NETWORK" == netns ]]; then echo "${POD_CIDR/#127./10.}"; else echo "$POD_CIDR"; fi
}

# node_cidr: local Node $node_index's pod range, a sixteenth of the cluster's pod range.
node_cidr() {
  python3 -c 'import ipaddress, sys
print(list(ipaddress.ip_network(sys.argv[1]).subnets(prefixlen_diff=4))[int(sys.argv[2]) - 1])' \
    "$(pod_range)" "$node_index"
}

# pod_cidr_unusable CIDR: why CIDR cannot be this cluster's POD_CIDR in $POD_NETWORK (empty:
# it can). Caught here, at `up`: the kubelet would only leave every pod ContainerCreating.
# loopback: inside 127.0.0.0/8 (pods bind loopback addresses) without 127.0.0.1 (the
# control plane's); netns: a private range once 127. reads as 10.; both: a /24 or larger,
# so that each of up to 16 local Nodes gets a slice.
pod_cidr_unusable() {
  python3 - "$1" "$POD_NETWORK" <<'EOF'
import ipaddress, sys
cidr, network = sys.argv[1:]
try:
    pods = ipaddress.IPv4Network(cidr)
except ValueError as exc:
    sys.exit(print(f"is not an IPv4 network like 127.22.0.0/16 ({exc})"))
if pods.prefixlen > 24:
    sys.exit(print("is smaller than a /24 (each local Node takes a sixteenth of it)"))
if network == "loopback":
    if not pods.subnet_of(ipaddress.IPv4Network("127.0.0.0/8")):
        sys.exit(print("is outside 127.0.0.0/8: loopback pods bind loopback addresses "
                       "(POD_NETWORK=netns takes a private range)"))
    if ipaddress.IPv4Address("127.0.0.1") in pods:
        sys.exit(print("holds 127.0.0.1, the control plane's address"))
else:
    moved = ipaddress.IPv4Network(cidr.replace("127.", "10.", 1) if cidr.startswith("127.") else cidr)
    private = ("10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16")
    if not any(moved.subnet_of(ipaddress.IPv4Network(p)) for p in private):
        sys.exit(print(f"is not inside a private range ({', '.join(private)}; 127.N reads as 10.N)"))
EOF
}

# netns_clash RANGE: why RANGE cannot be a netns cluster's pod range here (empty: it can):
# it overlaps the Service range, the real-kubelet Node's 10.244.0.0/16, or a route of
# the machine other than this cluster's own bridge (another cluster's, the host's LAN).
netns_clash() {
  python3 - "$1" "$SERVICE_CIDR" "$pod_bridge" "$(ip -4 -o route show 2>/dev/null)" <<'EOF'
import ipaddress, sys
pods, services, bridge, routes = sys.argv[1:]
pods = ipaddress.ip_network(pods, strict=False)
for what, net in (("the Service range", services), ("the real-kubelet Node's range", "10.244.0.0/16")):
    if pods.overlaps(ipaddress.ip_network(net)):
        sys.exit(print(f"{pods} overlaps {what} {net}"))
for route in routes.splitlines():
    words = route.split()
    dev = words[words.index("dev") + 1] if "dev" in words else ""
    if words and words[0] != "default" and dev != bridge:
        if pods.overlaps(ipaddress.ip_network(words[0], strict=False)):
            sys.exit(print(f"{pods} overlaps the route {words[0]} on {dev}"))
EOF
}

# netns_up: the cluster's bridge with the pods' gateway (the range's first address) before
# any pod, so that the `kubernetes` Service's DNAT to the API server on 127.0.0.1
# (hack/local_kubelet/proxy.py) is allowed on it: route_localnet, this bridge only.
netns_up() {
  local gateway
  gateway="$(python3 -c 'import ipaddress, sys
n = ipaddress.ip_network(sys.argv[1]); print(f"{n.network_address + 1}/{n.prefixlen}")' "$(pod_range)")"
  ip link show "$pod_bridge" >/dev/null 2>&1 || ip link add "$pod_bridge" type bridge
  ip addr replace "$gateway" dev "$pod_bridge"
  ip link set "$pod_bridge" up
  sysctl -qw "net.ipv4.conf.$pod_bridge.route_localnet=1"
  neighbour_room
}

# neighbour_room: the kernel's ARP table is one for every network namespace, capped at
# gc_thresh3 (default 1,024) entries in all. Every pod keeps an entry for each peer it
# talks to, so 50 pods in one fleet fill it (50 x 49), and beyond the cap "neighbor table
# overflow": no new entry, packets to that neighbour dropped until the garbage collector
# frees one (seconds). Raised, never lowered, as large Kubernetes nodes are configured.
NEIGH_THRESHOLDS=(gc_thresh1=8192 gc_thresh2=32768 gc_thresh3=65536)
neighbour_room() {
  local setting key want have
  for setting in "${NEIGH_THRESHOLDS[@]}"; do
    key="net.ipv4.neigh.default.${setting%%=*}" want="${setting#*=}"
    have="$(sysctl -n "$key" 2>/dev/null || echo 0)"
    if (( have < want )); then sysctl -qw "$key=$want" || log "WARNING: could not raise $key"; fi
  done
}

# netns_down: delete this cluster's pod namespaces (their veths go with them), its Service
# rules (chains named after it, hack/local_kubelet/proxy.py) and its bridge.
netns_down() {
  local ns chain base="${netns_prefix^^}"
  for ns in $(ip netns list 2>/dev/null | awk '{print $1}'); do
    [[ "$ns" == "$netns_prefix"-* ]] && ip netns delete "$ns"
  done
  if command -v iptables >/dev/null; then
    while iptables -w 5 -t nat -D PREROUTING -i "$pod_bridge" -j "$base-SVC" 2>/dev/null; do :; done
    while iptables -w 5 -t nat -D POSTROUTING -o "$pod_bridge" -j "$base-MASQ" 2>/dev/null; do :; done
    for chain in INPUT FORWARD; do
      while iptables -w 5 -D "$chain" -i "$pod_bridge" -j "$base-FILTER" 2>/dev/null; do :; done
    done
    for chain in "nat $base-SVC" "nat $base-MASQ" "filter $base-FILTER"; do
      iptables -w 5 -t "${chain% *}" -F "${chain#* }" 2>/dev/null &&
        iptables -w 5 -t "${chain% *}" -X "${chain#* }"
    done
  fi
  if ip link show "$pod_bridge" >/dev/null 2>&1; then ip link delete "$pod_bridge"; fi
  return 0
}

# node_index NAME: I of the local Node NAME (fails for another name).
node_index() {
  local i
  for ((i = 1; i <= MAX_NODES; i++)); do
    node_vars "$i"
    [[ "$node" == "$1" ]] && { echo "$i"; return 0; }
  done
  die "no local Node named $1 (hack/cluster.sh nodes)"
}

make_node_pki() {
  sign "$cert" "/O=system:nodes/CN=system:node:$node" "$client"
  sign "$cert-serving" "/O=system:nodes/CN=system:node:$node" "$server
subjectAltName=IP:127.0.0.1,DNS:localhost,DNS:$node"
  write_kubeconfig "$pki/$cert.kubeconfig" "$cert" "system:node:$node"
}

# --- processes ----------------------------------------------------------------

# starttime PID: the kernel's start time of a process, to tell it from a later
# process that reused the PID.
starttime() { sed 's/^.*) //' "/proc/$1/stat" 2>/dev/null | awk '{print $20}'; }

# alive PIDFILE: the recorded process still runs (same PID and start time).
alive() {
  local file="$1" pid start
  [[ -f "$file" ]] || return 1
  read -r pid start <"$file" || return 1
  [[ -n "$pid" && "$(starttime "$pid")" == "$start" ]]
}

# start NAME ARGV...: run a component in its own session, log and PID recorded.
start() {
  local name="$1"; shift
  if alive "$pids/$name.pid"; then return 0; fi
  log "starting $name"
  setsid "$@" >>"$logs/$name.log" 2>&1 </dev/null 9>&- &
  local pid=$!
  local start_time=""
  for _ in 1 2 3 4 5; do start_time="$(starttime "$pid")"; [[ -n "$start_time" ]] && break; sleep 0.05; done
  echo "$pid $start_time" >"$pids/$name.pid"
}

# stop PIDFILE: SIGTERM the recorded process group, wait, then SIGKILL.
stop() {
  local file="$1" pid start deadline
  [[ -f "$file" ]] || return 0
  read -r pid start <"$file" || { rm -f "$file"; return 0; }
  if [[ -z "$pid" ]] || { [[ -d /proc/$pid ]] && [[ "$(starttime "$pid")" != "$start" ]]; }; then
    rm -f "$file"; return 0  # the PID now belongs to someone else
  fi
  kill -TERM -- "-$pid" 2>/dev/null || kill -TERM "$pid" 2>/dev/null || true
  deadline=$((SECONDS + ${STOP_TIMEOUT:-15}))
  while kill -0 -- "-$pid" 2>/dev/null && ((SECONDS < deadline)); do sleep 0.2; done
  if kill -0 -- "-$pid" 2>/dev/null; then
    log "$(basename "$file" .pid) did not stop in time: SIGKILL"
    kill -KILL -- "-$pid" 2>/dev/null || true
  fi
  rm -f "$file"
}

tail_logs() {
  local f
  for f in "$logs"/*.log; do
    [[ -f "$f" ]] || continue
    printf '\n--- last lines of %s ---\n' "$f" >&2
    tail -n 15 "$f" >&2
  done
}

# wait_for WHAT CHECK...: poll CHECK until it passes; fail loudly, with the logs'
# tails, at the deadline or as soon as a started component has died.
wait_for() {
  local what="$1"; shift
  local deadline=$((SECONDS + UP_TIMEOUT)) f
  until "$@" >/dev/null 2>&1; do
    for f in "$pids"/*.pid; do
      if ! alive "$f"; then
        tail_logs
        die "$(basename "$f" .pid) exited while waiting for $what (logs above, all in $logs)"
      fi
    done
    if ((SECONDS >= deadline)); then
      tail_logs
      die "timed out after ${UP_TIMEOUT}s waiting for $what (logs above, all in $logs)"
    fi
    sleep 0.3
  done
}

# start_kubelet: start local Node $node's kubelet (node_vars first) unless it runs.
start_kubelet() {
  make_node_pki
  mkdir -p "$node_pids"
  start "$(basename "$kubelet_pid" .pid)" env \
    LOCAL_KUBELET_NODE_NAME="$node" \
    LOCAL_KUBELET_ZONE="$node_zone" \
    LOCAL_KUBELET_PRIMARY="$([[ "$node" == "$NODE_NAME" ]] && echo true || echo false)" \
    LOCAL_KUBELET_KUBECONFIG="$pki/$cert.kubeconfig" \
    LOCAL_KUBELET_ADMIN_KUBECONFIG="$kubeconfig" \
    LOCAL_KUBELET_STATE_DIR="$node_dir/kubelet" \
    LOCAL_KUBELET_VOLUMES_DIR="$node_dir/volumes" \
    LOCAL_KUBELET_PID_DIR="$node_pids" \
    LOCAL_KUBELET_POD_CIDR="$(node_cidr)" \
    LOCAL_KUBELET_POD_NETWORK="$POD_NETWORK" \
    LOCAL_KUBELET_CLUSTER_POD_CIDR="$(pod_range)" \
    LOCAL_KUBELET_BRIDGE="$pod_bridge" \
    LOCAL_KUBELET_NETNS_PREFIX="$netns_prefix" \
    LOCAL_KUBELET_SERVICE_CIDR="$SERVICE_CIDR" \
    LOCAL_KUBELET_PORT="$node_port" \
    LOCAL_KUBELET_TLS_CERT="$pki/$cert-serving.crt" \
    LOCAL_KUBELET_TLS_KEY="$pki/$cert-serving.key" \
    LOCAL_KUBELET_CLIENT_CA="$pki/ca.crt" \
    LOCAL_KUBELET_INITIAL_BACKOFF_SECONDS="$KUBELET_INITIAL_BACKOFF_SECONDS" \
    LOCAL_KUBELET_FARM_EVENTS="$dir/kubelet/farm-events.jsonl" \
    ${KUBELET_MAX_PODS:+LOCAL_KUBELET_MAX_PODS="$KUBELET_MAX_PODS"} \
    ${KUBELET_CPU:+LOCAL_KUBELET_CPU="$KUBELET_CPU"} \
    ${KUBELET_MEMORY:+LOCAL_KUBELET_MEMORY="$KUBELET_MEMORY"} \
    ${SIMULATE_NODES:+LOCAL_KUBELET_SIMULATE_NODES="$SIMULATE_NODES"} \
    "$root/.venv/bin/local-kubelet"
}

# stop_node I [keep-pods]: stop local Node I's kubelet and, unless told, its pods' processes
# (a lost machine takes its containers with it).
stop_node() {
  local f
  node_vars "$1"
  stop "$kubelet_pid"
  [[ "${2:-}" == keep-pods ]] && return 0
  for f in "$node_pids"/*.pid; do [[ -f "$f" ]] && STOP_TIMEOUT=5 stop "$f"; done
  return 0
}

# stop_extra_nodes: a cluster asked for fewer Nodes than it runs stops the rest and
# removes their Node objects (their pods go with them).
stop_extra_nodes() {
  local i
  for ((i = NODES + 1; i <= MAX_NODES; i++)); do
    node_vars "$i"
    [[ -f "$kubelet_pid" || -d "$node_pids" ]] || continue
    log "stopping local Node $node (NODES=$NODES)"
    stop_node "$i"
    "$bin/kubectl" --kubeconfig "$kubeconfig" delete node "$node" --ignore-not-found >/dev/null
  done
}

# Serialise up and down: several engineers and test runs share one cluster.
# (Components are started with fd 9 closed, so they never hold the lock.)
lock() {
  exec 9>>"$dir/up.lock"
  flock -w 120 9 || log "WARNING: $dir/lock is still held after 120 s; going on without it"
}

api_ready() {
  curl -sf --max-time 2 --cacert "$pki/ca.crt" --cert "$pki/admin.crt" --key "$pki/admin.key" \
    "https://127.0.0.1:$API_PORT/readyz" | grep -q ok
}

# node_ready NAME [SINCE]: the Node is Ready, with a heartbeat at or after SINCE if given.
node_ready() {
  local out status beat name="$1" since="${2:-}"
  out="$("$bin/kubectl" --kubeconfig "$kubeconfig" get node "$name" -o 'jsonpath={.status.conditions[?(@.type=="Ready")].status} {.status.conditions[?(@.type=="Ready")].lastHeartbeatTime}' 2>/dev/null)" || return 1
  read -r status beat <<<"$out"
  [[ "$status" == True ]] || return 1
  # After a reboot the Node still says Ready from before: when this run started the
  # kubelet, only a heartbeat written since then counts.
  [[ -z "$since" ]] || (($(date -d "$beat" +%s) >= since))
}

# forget_dead: drop the PID files of processes that no longer run (a reboot, a
# kill -9), so that waiting for one component does not fail on another's stale file.
forget_dead() {
  local f
  for f in "$pids"/*.pid; do
    [[ -f "$f" ]] && ! alive "$f" && rm -f "$f"
  done
  return 0
}

# cluster_alive DIR: a process recorded by the cluster in DIR still runs.
cluster_alive() {
  local f
  for f in "$1"/pids/*.pid "$1"/pids/pods/*.pid "$1"/pids/pods/*/*.pid; do alive "$f" && return 0; done
  return 1
}

# claim_pod_cidr: settle POD_CIDR (see the top) and record it as this cluster's.
claim_pod_cidr() {
  mkdir -p "$pod_cidrs"
  exec 8>>"$pod_cidrs/.lock"
  flock -w 60 8 || die "the pod CIDR registry $pod_cidrs is locked"
  local cidr="${POD_CIDR_GIVEN:-$POD_CIDR}" n owner clash why tries=0
  why="$([[ -z "$cidr" ]] || pod_cidr_unusable "$cidr")"
  if [[ -n "$why" && -n "$POD_CIDR_GIVEN" ]]; then
    die "POD_CIDR $cidr cannot be a $POD_NETWORK pod range: it $why"
  elif [[ -n "$why" ]]; then
    log "the recorded pod range $cidr cannot be a $POD_NETWORK pod range ($why); deriving one"
    cidr=""
  fi
  if [[ -z "$cidr" ]]; then
    n=$((16 + 0x$(printf %s "$dir" | sha256sum | cut -c1-4) % 239))
    cidr="127.$n.0.0/16"
  fi
  while :; do
    owner="$(cat "$pod_cidrs/${cidr//\//_}" 2>/dev/null || true)"
    clash=""
    [[ "$POD_NETWORK" != netns ]] || clash="$(netns_clash "${cidr/#127./10.}")"
    if [[ -z "$owner" || "$owner" == "$dir" ]] || ! cluster_alive "$owner"; then
      [[ -z "$clash" ]] && break
      [[ -z "$POD_CIDR_GIVEN" ]] || die "POD_CIDR $cidr cannot be a netns pod range: $clash"
      log "pod range $cidr cannot be a netns pod range ($clash); trying the next"
    else
      [[ -z "$POD_CIDR_GIVEN" ]] || die "POD_CIDR $cidr is in use by the running cluster in $owner"
      log "pod range $cidr is held by the running cluster in $owner; trying the next"
    fi
    ((++tries < 239)) || die "no free 127.N.0.0/16 pod range for $dir"
    n="${cidr#127.}" n="${n%%.*}"
    cidr="127.$((16 + (n - 16 + 1) % 239)).0.0/16"
  done
  echo "$dir" >"$pod_cidrs/${cidr//\//_}"
  echo "$cidr" >"$dir/pod-cidr"
  POD_CIDR="$cidr"
  exec 8>&-
}

# release_pod_cidr: forget this cluster's claim (after `down`).
release_pod_cidr() {
  local file="$pod_cidrs/${POD_CIDR//\//_}"
  [[ -n "$POD_CIDR" && "$(cat "$file" 2>/dev/null)" == "$dir" ]] && rm -f "$file"
  return 0
}

# netns_unavailable: why this machine cannot make a network namespace (empty: it can).
netns_unavailable() {
  local ns="mf-check-$$" why
  why="$({ ip netns add "$ns" && ip netns delete "$ns"; } 2>&1)" || echo "${why:-ip netns add failed}"
}

# choose_pod_network: netns falls back to loopback on a machine that cannot make a network
# namespace, saying why in one line and recording it in $dir/pod-network-fallback (the
# pod-network test set's skip names it); set by hand, POD_NETWORK=netns fails there
# instead. A fallback is tried again once the cluster is down (no pod keeps its network).
# Installs the Debian packages the chosen network needs.
choose_pod_network() {
  local why fallback="$dir/pod-network-fallback"
  if [[ -z "$POD_NETWORK_GIVEN" && -z "${SIMULATE_NODES:-}" && -f "$fallback" ]] && ! alive "$pids/etcd.pid"; then
    POD_NETWORK=netns
  fi
  [[ "$POD_NETWORK_GIVEN" != loopback ]] || rm -f "$fallback"
  ensure_debian_packages
  [[ "$POD_NETWORK" == netns ]] && ! alive "$pids/kubelet.pid" || return 0
  why="$(netns_unavailable)"
  if [[ -z "$why" ]]; then
    rm -f "$fallback"
    return 0
  fi
  [[ -z "$POD_NETWORK_GIVEN" ]] || die "POD_NETWORK=netns: this machine cannot make a network namespace: $why"
  log "POD_NETWORK=loopback: this machine cannot make a network namespace ($why)"
  POD_NETWORK=loopback
  mkdir -p "$dir"
  echo "$why" >"$fallback"
}

up() {
  [[ "$POD_NETWORK" == loopback || "$POD_NETWORK" == netns ]] || die "POD_NETWORK=$POD_NETWORK: loopback or netns"
  local was
  choose_pod_network
  # Running pods keep the network they started with: a change needs `down` first.
  was="$(cat "$dir/pod-network" 2>/dev/null || echo "$POD_NETWORK")"
  if [[ "$was" != "$POD_NETWORK" ]] && alive "$pids/kubelet.pid"; then
    die "this cluster runs POD_NETWORK=$was; 'hack/cluster.sh down' first to make it $POD_NETWORK"
  fi
  claim_pod_cidr
  bin="$("$root/hack/build-k8s.sh")"
  mkdir -p "$logs" "$pids" "$dir/etcd" "$dir/bin"
  forget_dead
  ln -sfn "$bin/kubectl" "$dir/bin/kubectl"
  make_pki
  make_kubeconfigs
  local t0=$SECONDS

  start etcd "$bin/etcd" --name local --data-dir "$dir/etcd" \
    --listen-client-urls "http://127.0.0.1:$ETCD_PORT" --advertise-client-urls "http://127.0.0.1:$ETCD_PORT" \
    --listen-peer-urls "http://127.0.0.1:$ETCD_PEER_PORT" --initial-advertise-peer-urls "http://127.0.0.1:$ETCD_PEER_PORT" \
    --initial-cluster "local=http://127.0.0.1:$ETCD_PEER_PORT" --listen-metrics-urls "" \
    --unsafe-no-fsync --log-level warn
  # A dev cluster: fsync off trades crash-durability for speed on a shared disk.

  # One started by an older checkout lacks the admission plugins below: restart it.
  if alive "$pids/kube-apiserver.pid" &&
    [[ "$(tr '\0' ' ' <"/proc/$(cut -d' ' -f1 "$pids/kube-apiserver.pid")/cmdline")" != *PodTolerationRestriction* ]]; then
    stop "$pids/kube-apiserver.pid"
  fi
  start kube-apiserver "$bin/kube-apiserver" \
    --etcd-servers "http://127.0.0.1:$ETCD_PORT" \
    --bind-address 127.0.0.1 --advertise-address 127.0.0.1 --secure-port "$API_PORT" \
    --tls-cert-file "$pki/apiserver.crt" --tls-private-key-file "$pki/apiserver.key" \
    --client-ca-file "$pki/ca.crt" \
    --service-account-issuer https://kubernetes.default.svc.cluster.local \
    --service-account-key-file "$pki/sa.pub" --service-account-signing-key-file "$pki/sa.key" \
    --service-cluster-ip-range "$SERVICE_CIDR" \
    --authorization-mode Node,RBAC \
    --allow-privileged=true \
    --kubelet-client-certificate "$pki/apiserver-kubelet-client.crt" \
    --kubelet-client-key "$pki/apiserver-kubelet-client.key" \
    --kubelet-certificate-authority "$pki/ca.crt" \
    --kubelet-preferred-address-types InternalIP \
    --requestheader-client-ca-file "$pki/front-proxy-ca.crt" \
    --requestheader-allowed-names front-proxy-client \
    --requestheader-username-headers X-Remote-User --requestheader-group-headers X-Remote-Group \
    --requestheader-extra-headers-prefix X-Remote-Extra- \
    --proxy-client-cert-file "$pki/front-proxy-client.crt" --proxy-client-key-file "$pki/front-proxy-client.key" \
    --endpoint-reconciler-type none --profiling=false \
    --enable-admission-plugins NodeRestriction,PodNodeSelector,PodTolerationRestriction
  # PodNodeSelector, PodTolerationRestriction: a namespace's annotations place its
  # pods on the real-kubelet Node (hack/real-node.sh), the operator's pods included.
  # --endpoint-reconciler-type none: Endpoints may not hold loopback IPs, and
  # pods reach the API through KUBERNETES_SERVICE_HOST=127.0.0.1 anyway.
  wait_for "kube-apiserver /readyz" api_ready

  # The endpoint controllers run only with the real-kubelet Node or POD_NETWORK=netns
  # (pods with bridge IPs); a change of mode restarts the controller-manager.
  local controllers='*,-endpoints-controller,-endpointslice-controller,-endpointslice-mirroring-controller'
  if [[ "${REAL_NODE:-0}" == 1 || "$POD_NETWORK" == netns ]] || alive "$dir/real-node/pids/kubelet.pid"; then controllers='*'; fi
  if [[ "$(cat "$dir/controllers" 2>/dev/null)" != "$controllers" ]]; then
    stop "$pids/kube-controller-manager.pid"
    echo "$controllers" >"$dir/controllers"
  fi
  start kube-controller-manager "$bin/kube-controller-manager" \
    --kubeconfig "$pki/controller-manager.kubeconfig" \
    --authentication-kubeconfig "$pki/controller-manager.kubeconfig" \
    --authorization-kubeconfig "$pki/controller-manager.kubeconfig" \
    --bind-address 127.0.0.1 --secure-port "$KCM_PORT" \
    --cluster-signing-cert-file "$pki/ca.crt" --cluster-signing-key-file "$pki/ca.key" \
    --root-ca-file "$pki/ca.crt" --service-account-private-key-file "$pki/sa.key" \
    --use-service-account-credentials --leader-elect=false --profiling=false \
    --kube-api-qps 100 --kube-api-burst 200 \
    --controllers "$controllers"
  # The default client limits (20/s, burst 30) pace the PV binder at ~7 claims/s
  # (three writes per claim): a fleet's data volumes would bind seconds apart.
  # No endpoint controllers without the real Node: API validation refuses loopback pod
  # IPs in Endpoints and EndpointSlices, so they could only retry failing writes and
  # post Events about them.

  start kube-scheduler "$bin/kube-scheduler" \
    --kubeconfig "$pki/scheduler.kubeconfig" \
    --authentication-kubeconfig "$pki/scheduler.kubeconfig" \
    --authorization-kubeconfig "$pki/scheduler.kubeconfig" \
    --bind-address 127.0.0.1 --secure-port "$SCHEDULER_PORT" --leader-elect=false --profiling=false

  "$root/hack/venv.sh"
  ((NODES >= 1 && NODES <= MAX_NODES)) || die "NODES=$NODES: 1 to $MAX_NODES local Nodes"
  echo "$NODES" >"$dir/node-count"
  echo "$POD_NETWORK" >"$dir/pod-network"
  [[ "$POD_NETWORK" != netns ]] || netns_up
  stop_extra_nodes
  local i since=()
  for ((i = 1; i <= NODES; i++)); do
    node_vars "$i"
    since[i]=""
    alive "$kubelet_pid" || since[i]=$(date +%s)
    start_kubelet
  done
  for ((i = 1; i <= NODES; i++)); do
    node_vars "$i"
    wait_for "node $node to be Ready" node_ready "$node" "${since[i]}"
  done
  # Pods need their namespace's service account, which a controller creates.
  wait_for "the default service account" "$bin/kubectl" --kubeconfig "$kubeconfig" get serviceaccount default

  if [[ "${REAL_NODE:-0}" == 1 ]]; then "$root/hack/real-node.sh" up; fi

  log "cluster up in $((SECONDS - t0)) s; state in $dir"
  cat >&2 <<EOF

  export KUBECONFIG=$kubeconfig     # or: export KUBECONFIG=\$(make -s kubeconfig)
  export PATH=$dir/bin:\$PATH       # kubectl $("$bin/kubectl" version --client 2>/dev/null | sed -n 's/Client Version: //p')
  kubectl get nodes

EOF
}

down() {
  # First what others recorded here (hack/up.sh's operator), while the API
  # still answers; then the kubelet, so that it restarts nothing; then the
  # pods' processes; then the control plane in reverse order of start.
  local f
  # The real-kubelet Node first: it undoes its changes to the machine.
  if [[ -d "$dir/real-node" ]]; then "$root/hack/real-node.sh" down; fi
  for f in "$pids"/*.pid; do
    case "$(basename "$f" .pid)" in
      etcd | kube-apiserver | kube-controller-manager | kube-scheduler | kubelet | kubelet-*) ;;
      *) stop "$f" ;;
    esac
  done
  for f in "$pids"/kubelet.pid "$pids"/kubelet-*.pid; do stop "$f"; done
  for f in "$pids"/pods/*.pid "$pids"/pods/*/*.pid; do [[ -f "$f" ]] && STOP_TIMEOUT=5 stop "$f"; done
  for name in kube-scheduler kube-controller-manager kube-apiserver etcd; do
    stop "$pids/$name.pid"
  done
  # The memory of `local-tmpfs` claims (hack/local_kubelet/provisioner.py): no pod uses
  # them any more.
  local mount
  while read -r mount; do
    umount "$mount" || log "cannot unmount $mount"
  done < <(findmnt -rn -t tmpfs -o TARGET | grep "^$dir/" || true)
  netns_down
  release_pod_cidr
  log "cluster stopped (state kept in $dir; 'make clean' removes it)"
}

status() {
  local f rc=0
  for f in "$pids"/*.pid "$pids"/pods/*.pid "$pids"/pods/*/*.pid; do
    [[ -f "$f" ]] || continue
    if alive "$f"; then echo "running  $(basename "$f" .pid) (pid $(cut -d' ' -f1 "$f"))"
    else echo "DEAD     $(basename "$f" .pid)"; rc=1; fi
  done
  if [[ -d "$dir/real-node" ]]; then "$root/hack/real-node.sh" status || rc=1; fi
  return $rc
}

# hack/real-node.sh sources this file for its settings and helpers.
[[ "${BASH_SOURCE[0]}" == "$0" ]] || return 0

# start_node NAME: start one local Node's kubelet again and wait until it is Ready.
start_node() {
  local i since
  i="$(node_index "$1")"
  bin="$("$root/hack/build-k8s.sh")"
  node_vars "$i"
  since=""
  alive "$kubelet_pid" || since=$(date +%s)
  start_kubelet
  wait_for "node $node to be Ready" node_ready "$node" "$since"
}

nodes() {
  local i
  for ((i = 1; i <= NODES; i++)); do node_vars "$i"; echo "$node"; done
}

# signal_component NAME SIG: signal a recorded control-plane process group (no restart).
signal_component() {
  local file="$pids/$1.pid" pid start
  case "$1" in etcd | kube-apiserver | kube-controller-manager | kube-scheduler) ;; *) die "not a control-plane component: $1" ;; esac
  alive "$file" || die "$1 is not running"
  read -r pid start <"$file"
  kill "-$2" -- "-$pid"
}

# signal_pod NS/POD SIG: signal the processes of a pod's containers, found by the pod's
# uid in the PID files its kubelet keeps (each container is its own process group).
signal_pod() {
  local ns="${1%%/*}" pod="${1#*/}" uid f pid start hit=0
  uid="$("$dir/bin/kubectl" --kubeconfig "$kubeconfig" get pod -n "$ns" "$pod" -o 'jsonpath={.metadata.uid}')"
  [[ -n "$uid" ]] || die "no pod $1"
  for f in "$pids"/pods/"${uid}"_*.pid "$pids"/pods/*/"${uid}"_*.pid; do
    alive "$f" || continue
    read -r pid start <"$f"
    kill "-$2" -- "-$pid" && hit=1
  done
  ((hit)) || die "no running process of pod $1"
}

restart_kubelets() {
  local f
  for f in "$pids"/kubelet.pid "$pids"/kubelet-*.pid; do stop "$f"; done
}

case "${1:-}" in
  up) lock; up ;;
  restart-kubelet) lock; restart_kubelets; up ;;  # after changing hack/local_kubelet
  down) lock; down ;;
  status) status ;;
  kubeconfig) echo "$kubeconfig" ;;
  nodes) nodes ;;
  stop-kubelet) lock; stop_node "$(node_index "${2:?NODE}")" keep-pods ;;
  stop-node) lock; stop_node "$(node_index "${2:?NODE}")" ;;
  start-node) lock; start_node "${2:?NODE}" ;;
  signal) signal_component "${2:?COMPONENT}" "${3:?SIGNAL}" ;;
  restart) signal_component "${2:?COMPONENT}" 0; lock; stop "$pids/$2.pid"; up ;;
  signal-pod) signal_pod "${2:?NS/POD}" "${3:?SIGNAL}" ;;
  *) echo "usage: $0 up|down|status|kubeconfig|restart-kubelet|nodes|stop-kubelet NODE|stop-node NODE|start-node NODE|signal COMPONENT SIG|restart COMPONENT|signal-pod NS/POD SIG" >&2; exit 2 ;;
esac
