#!/usr/bin/env bash
# One more Node in the local cluster, run by the real kubelet with containerd and
# runc (hack/build-node.sh), pods on a CNI bridge with a network namespace each.
# docs/local-cluster.md, "The real-kubelet Node".
#
#   hack/real-node.sh check     # can this machine run it? prints the reason when not (exit 1)
#   hack/real-node.sh up        # start containerd and the kubelet; wait for the Node to be Ready
#   hack/real-node.sh images    # build (cached) and import the `make images` images; print them
#   hack/real-node.sh import ARCHIVE REF  # import an image archive built elsewhere
#   hack/real-node.sh tag SRC DST  # give an imported image another name
#   hack/real-node.sh down      # stop it and undo every change it made to the machine
#   hack/real-node.sh status
#
# `REAL_NODE=1 hack/cluster.sh up` calls `up` after the control plane, and
# `hack/cluster.sh down` calls `down`. The Node is labelled and tainted
# marketplace.p2p.dev/real-kubelet=true:NoSchedule, so only pods that ask land on it.
#
# What it changes outside the cluster directory, all undone by `down`: a bridge
# (mfb<hash>) holding the gateway 10.244.<n>.1/24 (also the Node's InternalIP) and
# 10.96.0.1/32 (the `kubernetes` Service, forwarded by socat to the API server on
# loopback); cgroups /sys/fs/cgroup/*/mf-<hash>; /run/mf-<hash> (containerd's
# state and socket); the kernel settings the kubelet sets at start (saved, restored);
# the directories the kubelet creates at fixed paths (removed when it created them).
# No iptables rules, no IP forwarding: the host reaches pods on the bridge directly.
# One real Node per machine at a time (10.96.0.1, the kubelet's device-plugin socket).
set -euo pipefail
# shellcheck source=cluster.sh
source "$(dirname "${BASH_SOURCE[0]}")/cluster.sh"
# shellcheck source=versions.env
source "$root/hack/versions.env"

REAL_NODE_NAME="${REAL_NODE_NAME:-real-node}"
REAL_KUBELET_PORT="${REAL_KUBELET_PORT:-$((KUBELET_PORT + NODES))}"  # after the local kubelets
LABEL=marketplace.p2p.dev/real-kubelet
hash="$(printf %s "$dir" | sha256sum | cut -c1-6)"
octet=$((0x$hash % 250 + 1))
subnet="10.244.$octet.0/24" gateway="10.244.$octet.1"
bridge="mfb$hash" cgroup="mf-$hash"
rn="$dir/real-node" run="/run/mf-$hash"
# Apart from the control plane's: cluster.sh's wait_for checks only these.
pids="$rn/pids" logs="$rn/logs"
socket="$run/containerd.sock"
owner_file=/run/marketplace-fleet-real-node
# What the kubelet sets at start (pkg/kubelet/cm setupKernelTunables), restored by down.
sysctls=(kernel.panic kernel.panic_on_oops vm.overcommit_memory vm.panic_on_oom
  kernel.keys.root_maxkeys kernel.keys.root_maxbytes)
# Directories the kubelet and containerd create at fixed paths whatever their root
# directories (the pods' network namespaces are in /run/netns).
fixed_dirs=(/var/lib/kubelet /var/log/containers /var/log/pods /run/netns)

log() { printf '[real-node] %s\n' "$*" >&2; }

# cannot: why this machine cannot run the real Node (empty when it can).
cannot() {
  [[ "$(uname -s)" == Linux ]] || { echo "not Linux"; return; }
  ((EUID == 0)) || { echo "not root (the kubelet, containerd and runc need root)"; return; }
  [[ -d /sys/fs/cgroup ]] || { echo "no /sys/fs/cgroup"; return; }
  local probe="/sys/fs/cgroup/memory/mf-probe-$$"
  [[ -d /sys/fs/cgroup/memory ]] || probe="/sys/fs/cgroup/mf-probe-$$"
  if ! mkdir "$probe" 2>/dev/null; then echo "cannot create a cgroup ($probe: read-only /sys/fs/cgroup?)"; return; fi
  rmdir "$probe"
  command -v ip >/dev/null || { echo "no ip (iproute2)"; return; }
  if ! ip link add "mfp$$" type bridge 2>/dev/null; then echo "cannot create a bridge (no CAP_NET_ADMIN?)"; return; fi
  ip link del "mfp$$"
}

check() {
  local why
  why="$(cannot)"
  if [[ -n "$why" ]]; then echo "$why"; return 1; fi
}

# ctr against this Node's containerd (quiet: every call warns that cgroup v1 is deprecated).
ctr_() { "$nodebin/ctr" --address "$socket" --namespace k8s.io "$@" 2>/dev/null; }

# --- the machine: bridge, cgroups, sysctls, fixed directories -------------------

claim_machine() {
  if [[ -f "$owner_file" ]]; then
    local other
    other="$(cat "$owner_file")"
    if [[ "$other" != "$dir" ]] && alive "$other/real-node/pids/kubelet.pid"; then
      die "the real Node of the cluster in $other runs on this machine; one at a time ('CLUSTER_DIR=$other hack/real-node.sh down')"
    fi
  fi
  echo "$dir" >"$owner_file"
}

save_machine_state() {
  [[ -f "$rn/saved-sysctls" ]] && return 0
  local name path
  for name in "${sysctls[@]}"; do echo "$name=$(sysctl -n "$name")"; done >"$rn/saved-sysctls.tmp"
  for path in "${fixed_dirs[@]}"; do [[ -e "$path" ]] || echo "$path"; done >"$rn/created-dirs"
  mv "$rn/saved-sysctls.tmp" "$rn/saved-sysctls"
}

restore_machine_state() {
  local line path
  if [[ -f "$rn/saved-sysctls" ]]; then
    while IFS= read -r line; do sysctl -qw "$line" >/dev/null || log "could not restore $line"; done <"$rn/saved-sysctls"
  fi
  if [[ -f "$rn/created-dirs" ]]; then
    while IFS= read -r path; do
      [[ -n "$path" && -e "$path" ]] || continue
      # `ip netns` (another cluster's pods, or test-netns) mounts /run/netns on itself:
      # it is in use then, and stays.
      if mountpoint -q "$path"; then log "left $path: a mount point now"; continue; fi
      rm -rf --one-file-system "$path"
    done <"$rn/created-dirs"
  fi
  rm -f "$rn/saved-sysctls" "$rn/created-dirs"
}

make_bridge() {
  if ! ip link show "$bridge" >/dev/null 2>&1; then
    local taken
    taken="$(ip -4 -o addr show to "$subnet" | awk '{print $2}')"
    [[ -z "$taken" ]] || die "$subnet is already on $taken (another cluster's real Node?)"
    ip -4 -o addr show to "$SERVICE_IP/32" | grep -q . && die "$SERVICE_IP is already on this machine"
    ip link add "$bridge" type bridge
  fi
  ip addr replace "$gateway/24" dev "$bridge"
  ip addr replace "$SERVICE_IP/32" dev "$bridge"
  ip link set "$bridge" up
}

# make_cgroups: the kubelet's cgroup root, in every v1 hierarchy (and the unified one).
make_cgroups() {
  local hierarchy
  for hierarchy in /sys/fs/cgroup/*/; do
    mountpoint -q "$hierarchy" || continue
    mkdir -p "$hierarchy$cgroup"
    if [[ -f "${hierarchy}cpuset.cpus" && ! -s "$hierarchy$cgroup/cpuset.cpus" ]]; then
      cat "${hierarchy}cpuset.cpus" >"$hierarchy$cgroup/cpuset.cpus"
      cat "${hierarchy}cpuset.mems" >"$hierarchy$cgroup/cpuset.mems"
    fi
  done
}

# cgroup_pids: every process still in the real Node's cgroups.
cgroup_pids() {
  find /sys/fs/cgroup/*/"$cgroup" -name cgroup.procs -exec cat {} + 2>/dev/null | sort -u
}

remove_cgroups() {
  local hierarchy
  for hierarchy in /sys/fs/cgroup/*/"$cgroup"; do
    [[ -d "$hierarchy" ]] && find "$hierarchy" -depth -type d -exec rmdir {} + 2>/dev/null
  done
  return 0
}

# --- containerd -----------------------------------------------------------------

write_containerd_config() {
  mkdir -p "$rn/containerd" "$rn/cni" "$rn/cni-ipam" "$run"
  cat >"$rn/containerd.toml" <<EOF
version = 3
root = "$rn/containerd"
state = "$run/containerd"
disabled_plugins = ["io.containerd.nri.v1.nri", "io.containerd.snapshotter.v1.btrfs",
  "io.containerd.snapshotter.v1.zfs", "io.containerd.snapshotter.v1.devmapper",
  "io.containerd.snapshotter.v1.erofs", "io.containerd.snapshotter.v1.blockfile"]

[grpc]
  address = "$socket"
[ttrpc]
  address = "$socket.ttrpc"
[debug]
  address = ""
[metrics]
  address = ""

[plugins.'io.containerd.cri.v1.runtime']
  # This VM lacks CAP_SYS_RESOURCE: runc may not lower its oom_score_adj.
  restrict_oom_score_adj = true
  [plugins.'io.containerd.cri.v1.runtime'.cni]
    bin_dirs = ["/usr/lib/cni"]
    conf_dir = "$rn/cni"
  [plugins.'io.containerd.cri.v1.runtime'.containerd.runtimes.runc.options]
    SystemdCgroup = false

[plugins.'io.containerd.cri.v1.images']
  [plugins.'io.containerd.cri.v1.images'.pinned_images]
    sandbox = "$PAUSE_IMAGE"

[plugins.'io.containerd.grpc.v1.cri']
  stream_server_address = "127.0.0.1"
  stream_server_port = "0"
EOF
  # The bridge has no part in routing beyond this machine: no masquerade, no
  # forwarding; the host (and the kubelet's probes) reach pods through it.
  cat >"$rn/cni/10-mf.conflist" <<EOF
{
  "cniVersion": "1.0.0",
  "name": "mf-$hash",
  "plugins": [
    {
      "type": "bridge", "bridge": "$bridge", "isGateway": false, "ipMasq": false,
      "hairpinMode": true,
      "ipam": {
        "type": "host-local", "dataDir": "$rn/cni-ipam",
        "ranges": [[{"subnet": "$subnet", "rangeStart": "10.244.$octet.10", "gateway": "$gateway"}]],
        "routes": [{"dst": "0.0.0.0/0", "gw": "$gateway"}]
      }
    },
    {"type": "portmap", "capabilities": {"portMappings": true}}
  ]
}
EOF
}

containerd_ready() { ctr_ version; }

# import_image ARCHIVE REF: import an image archive unless containerd has REF already.
import_image() {
  local archive="$1" ref="$2" have
  have="$(ctr_ images ls --quiet)"  # not piped into grep -q: pipefail and SIGPIPE
  grep -qxF "$ref" <<<"$have" && return 0
  log "importing $ref"
  ctr_ images import "$archive" >/dev/null
}

# images: the `make images` images (built if the sources changed), imported; prints them.
images() {
  local refs ref tag name archive
  refs="$("$root/hack/images.sh")"
  for ref in $refs; do
    tag="${ref##*:}" name="${ref%:*}"; name="${name##*/}"
    archive="$cache_dir/images/$name-$tag.tar"
    if [[ ! -f "$archive" ]]; then
      # Another checkout's images.sh keeps only its own tag's archives: save ours here.
      archive="$rn/$name.tar"
      buildah push --quiet "$ref" "docker-archive:$archive:$ref" >&2
    fi
    import_image "$archive" "$ref"
    rm -f "$rn/$name.tar"
  done
  # Earlier builds are dead weight (containerd collects their layers).
  # (Only this checkout's registry: hack/one-port.sh's images stay.)
  for ref in $(ctr_ images ls --quiet | grep -E "^${IMAGE_REGISTRY:-localhost}/marketplace-fleet/(node|operator):"); do
    grep -qxF "$ref" <<<"$refs" || ctr_ images rm "$ref" >/dev/null
  done
  echo "$refs"
}

# --- the kubelet ----------------------------------------------------------------

write_kubelet_config() {
  sign real-kubelet "/O=system:nodes/CN=system:node:$REAL_NODE_NAME" "$client"
  sign real-kubelet-serving "/O=system:nodes/CN=system:node:$REAL_NODE_NAME" "$server
subjectAltName=IP:$gateway,DNS:$REAL_NODE_NAME"
  write_kubeconfig "$rn/kubelet.kubeconfig" real-kubelet "system:node:$REAL_NODE_NAME"
  mkdir -p "$rn/kubelet" "$rn/pod-logs" "$rn/volume-plugins"
  cat >"$rn/kubelet.yaml" <<EOF
apiVersion: kubelet.config.k8s.io/v1beta1
kind: KubeletConfiguration
address: $gateway
port: $REAL_KUBELET_PORT
readOnlyPort: 0
healthzPort: 0
tlsCertFile: $pki/real-kubelet-serving.crt
tlsPrivateKeyFile: $pki/real-kubelet-serving.key
authentication:
  anonymous: {enabled: false}
  webhook: {enabled: false}
  x509: {clientCAFile: $pki/ca.crt}
authorization:
  mode: AlwaysAllow  # any client certificate of the cluster CA: the API server's
containerRuntimeEndpoint: unix://$socket
cgroupDriver: cgroupfs
cgroupRoot: /$cgroup
cgroupsPerQOS: true
failCgroupV1: false  # this host is cgroup v1 (hybrid), as k3s allows
failSwapOn: false
makeIPTablesUtilChains: false
podLogsDir: $rn/pod-logs
volumePluginDir: $rn/volume-plugins
registerWithTaints:
- {key: $LABEL, value: "true", effect: NoSchedule}
evictionHard: {memory.available: 100Mi, nodefs.available: 2%, imagefs.available: 2%, nodefs.inodesFree: 2%}
# No image garbage collection: the images are imported (pullPolicy Never), nothing could
# pull them back, and on a shared disk past 85 % the kubelet deleted the operator image a
# minute after its import (ErrImageNeverPull until the test's deadline).
imageGCHighThresholdPercent: 100
serializeImagePulls: false
EOF
}

node_heartbeat_since_start() {
  bin="$k8sbin" node_ready "$REAL_NODE_NAME" "$kubelet_since"
}

up() {
  local why
  why="$(cannot)"
  [[ -z "$why" ]] || die "this machine cannot run the real Node: $why"
  nodebin="$("$root/hack/build-node.sh")"
  k8sbin="$("$root/hack/build-k8s.sh")"
  mkdir -p "$rn" "$pids" "$logs"
  forget_dead
  claim_machine
  save_machine_state
  make_bridge
  make_cgroups
  write_containerd_config
  start containerd env PATH="$nodebin:$PATH" "$nodebin/containerd" --config "$rn/containerd.toml"
  wait_for containerd containerd_ready
  import_image "$nodebin/pause.tar" "$PAUSE_IMAGE"
  [[ "${REAL_NODE_IMAGES:-1}" == 0 ]] || images >/dev/null
  # In-cluster clients dial the `kubernetes` Service at 10.96.0.1:443 (kubelet's
  # KUBERNETES_SERVICE_HOST); with no kube-proxy, that address is on the bridge.
  start apiserver-forward socat "TCP-LISTEN:443,bind=$SERVICE_IP,reuseaddr,fork" \
    "TCP:127.0.0.1:$API_PORT"
  write_kubelet_config
  kubelet_since=""
  alive "$pids/kubelet.pid" || kubelet_since=$(date +%s)
  start kubelet env PATH="$nodebin:$PATH" "$nodebin/kubelet" --config "$rn/kubelet.yaml" \
    --kubeconfig "$rn/kubelet.kubeconfig" --root-dir "$rn/kubelet" \
    --hostname-override "$REAL_NODE_NAME" --node-ip "$gateway" \
    --node-labels "$LABEL=true" --v 1
  wait_for "node $REAL_NODE_NAME to be Ready" node_heartbeat_since_start
  log "node $REAL_NODE_NAME Ready: pods on $bridge ($subnet); logs in $logs"
}

# shim_pids: the containerd shims serving this Node's containerd (they outlive it).
shim_pids() {
  local p
  for p in /proc/[0-9]*; do
    [[ "$(readlink "$p/exe" 2>/dev/null)" == */containerd-shim-runc-v2 ]] || continue
    tr '\0' ' ' <"$p/cmdline" 2>/dev/null | grep -qF -- "-address $socket " && echo "${p#/proc/}"
  done
  return 0
}

down() {
  [[ -d "$rn" ]] || return 0
  nodebin="$("$root/hack/build-node.sh" path)"
  stop "$pids/kubelet.pid"
  stop "$pids/apiserver-forward.pid"
  local netns=() id ns p
  if alive "$pids/containerd.pid"; then
    # The pods' network namespaces, read from the sandboxes before they go.
    for id in $(ctr_ containers ls --quiet 2>/dev/null); do
      ns="$(ctr_ containers info "$id" 2>/dev/null | sed -n 's|.*"path": "\(/[^"]*netns[^"]*\)".*|\1|p' | head -1)"
      [[ -n "$ns" ]] && netns+=("$ns")
    done
    for id in $(ctr_ tasks ls --quiet 2>/dev/null); do ctr_ tasks kill --signal SIGKILL "$id" >/dev/null 2>&1 || true; done
  fi
  stop "$pids/containerd.pid"
  for p in $(shim_pids) $(cgroup_pids); do kill -KILL "$p" 2>/dev/null || true; done
  sleep 0.5
  # Mounts: the kubelet's volumes and root directory, containerd's rootfs, the netns files.
  findmnt -rn -o TARGET | awk -v a="$rn/" -v b="$run/" 'index($0, a) == 1 || index($0, b) == 1' \
    | sort -r | while IFS= read -r p; do umount -l "$p" 2>/dev/null || true; done
  for ns in "${netns[@]}"; do umount -l "$ns" 2>/dev/null || true; rm -f "$ns"; done
  rm -rf "$rn/cni-ipam" "$run"
  ip link del "$bridge" 2>/dev/null || true
  remove_cgroups
  restore_machine_state
  [[ "$(cat "$owner_file" 2>/dev/null)" == "$dir" ]] && rm -f "$owner_file"
  log "stopped; bridge, cgroups, mounts and kernel settings restored"
}

status() {
  local f
  for f in "$pids"/*.pid; do
    [[ -f "$f" ]] || continue
    if alive "$f"; then echo "running  real-node/$(basename "$f" .pid) (pid $(cut -d' ' -f1 "$f"))"
    else echo "DEAD     real-node/$(basename "$f" .pid)"; fi
  done
}

# Called by `hack/cluster.sh up|down`, which holds the cluster's lock on fd 9 already.
lock_once() { if [[ -e /proc/self/fd/9 ]] && flock -n 9; then return 0; fi; lock; }

cache_dir="${MARKETPLACE_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/marketplace-fleet}"
case "${1:-}" in
  check) check ;;
  up) lock_once; up ;;
  images) nodebin="$("$root/hack/build-node.sh")"; images ;;
  # tag SOURCE TARGET: TARGET names SOURCE's image too (a "new" image for rollout tests).
  # import ARCHIVE REF: an image built elsewhere (hack/one-port.sh), unless held already.
  import) nodebin="$("$root/hack/build-node.sh" path)"; import_image "$2" "$3" ;;
  tag) nodebin="$("$root/hack/build-node.sh" path)"; ctr_ images tag --force "$2" "$3" >/dev/null ;;
  down) lock_once; down ;;
  status) status ;;
  *) echo "usage: $0 check|up|images|import|tag|down|status" >&2; exit 2 ;;
esac
