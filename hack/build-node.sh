#!/usr/bin/env bash
# Build what the real-kubelet Node runs (hack/real-node.sh) and cache it outside
# git keyed by the versions, like hack/build-k8s.sh does for the control plane:
#
#   kubelet        k8s.io/kubernetes/cmd/kubelet at KUBERNETES_VERSION, with the
#                  same module graph as the control plane (hack/k8s-bundle's go.mod)
#   containerd     github.com/containerd/containerd/v2 at CONTAINERD_VERSION:
#                  containerd, containerd-shim-runc-v2, ctr (Debian's is 1.6,
#                  which kubelet 1.36+ no longer supports)
#   pause          the sandbox image (hack/real-node/pause), a one-binary image
#                  saved as pause.tar for `ctr images import`: no registry here
#
# runc and the CNI plugins (bridge, host-local, loopback, portmap) are Debian's
# (runc, containernetworking-plugins), installed here when missing.
#
#   hack/build-node.sh        # prints the bin directory; builds only what is missing
#   hack/build-node.sh path   # prints it, builds nothing
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
# shellcheck source=versions.env
source "$here/versions.env"

cache="${MARKETPLACE_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/marketplace-fleet}"
key="node-${KUBERNETES_VERSION}-containerd-${CONTAINERD_VERSION}-$(cat "$here/k8s-bundle/go.mod" \
  "$here/k8s-bundle/go.sum" "$here/real-node/pause/main.go" | sha256sum | cut -c1-12)"
bin="$cache/$key/bin"
wanted=(kubelet containerd containerd-shim-runc-v2 ctr pause pause.tar)
log() { echo "build-node: $*" >&2; }

complete() {
  local name
  for name in "${wanted[@]}"; do [[ -s "$bin/$name" ]] || return 1; done
}

ensure_debs() {
  local missing=()
  command -v runc >/dev/null || missing+=(runc)
  [[ -x /usr/lib/cni/bridge ]] || missing+=(containernetworking-plugins)
  command -v buildah >/dev/null || missing+=(buildah)
  command -v socat >/dev/null || missing+=(socat)
  command -v ip >/dev/null || missing+=(iproute2)
  ((${#missing[@]} == 0)) && return
  log "installing Debian packages: ${missing[*]}"
  apt-get update -qq >&2
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >&2
}

if [[ "${1:-}" == path ]]; then echo "$bin"; exit 0; fi  # where it is (or would be); no build
ensure_debs
if complete; then echo "$bin"; exit 0; fi
mkdir -p "$bin"
exec 9>"$cache/$key.lock"
flock 9
if complete; then echo "$bin"; exit 0; fi

export CGO_ENABLED=0
start=$SECONDS
minor="${KUBERNETES_VERSION#v1.}"; minor="${minor%%.*}"
pkg=k8s.io/component-base/version
if [[ ! -x "$bin/kubelet" ]]; then
  log "building kubelet $KUBERNETES_VERSION (about 6 min cold on 2 cores)"
  # In a copy of the bundle's module, so the kubelet's extra go.sum lines do
  # not change the checked-in files.
  work="$(mktemp -d)"
  trap 'rm -rf "$work"' EXIT
  cp "$here/k8s-bundle/go.mod" "$here/k8s-bundle/go.sum" "$work/"
  (cd "$work" && GOFLAGS=-mod=mod go build -trimpath -ldflags "-s -w \
    -X $pkg.gitVersion=$KUBERNETES_VERSION -X $pkg.gitMajor=1 -X $pkg.gitMinor=$minor \
    -X $pkg.gitTreeState=clean -X $pkg.buildDate=1970-01-01T00:00:00Z" \
    -o "$bin/kubelet.tmp" k8s.io/kubernetes/cmd/kubelet)
  mv "$bin/kubelet.tmp" "$bin/kubelet"
fi
if [[ ! -x "$bin/ctr" ]]; then
  log "building containerd $CONTAINERD_VERSION (about 3 min cold)"
  tmpbin="$(mktemp -d)"
  GOBIN="$tmpbin" go install -trimpath -tags no_btrfs,no_devmapper,no_zfs \
    -ldflags "-s -w -X github.com/containerd/containerd/v2/version.Version=$CONTAINERD_VERSION" \
    "github.com/containerd/containerd/v2/cmd/"{containerd,containerd-shim-runc-v2,ctr}"@$CONTAINERD_VERSION"
  mv "$tmpbin"/* "$bin/" && rmdir "$tmpbin"
fi
if [[ ! -x "$bin/pause" ]]; then
  (cd "$here/real-node/pause" && go build -trimpath -ldflags "-s -w" -o "$bin/pause" .)
fi
if [[ ! -s "$bin/pause.tar" ]]; then
  ctr="$(buildah from scratch)"
  buildah copy --quiet "$ctr" "$bin/pause" /pause >/dev/null
  buildah config --entrypoint '["/pause"]' --user 65535:65535 "$ctr"
  buildah commit --quiet --rm "$ctr" "$PAUSE_IMAGE" >/dev/null
  buildah push --quiet "$PAUSE_IMAGE" "docker-archive:$bin/pause.tar.tmp:$PAUSE_IMAGE" >&2
  mv "$bin/pause.tar.tmp" "$bin/pause.tar"
fi
log "built in $((SECONDS - start)) s"
echo "$bin"
