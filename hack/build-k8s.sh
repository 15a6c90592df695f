#!/usr/bin/env bash
# Build the local control plane (etcd, kube-apiserver, kube-controller-manager,
# kube-scheduler, kubectl) from the official Go modules, as one multi-call
# binary, and cache it outside git keyed by the pinned versions.
#
#   hack/build-k8s.sh          # prints the bin directory; builds only if missing
#
# The wrapper module in hack/k8s-bundle requires k8s.io/kubernetes and replaces
# every staging module k8s.io/X (v0.0.0 in kubernetes' own go.mod, which the
# module proxy does not serve) with the matching k8s.io/X release.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
# shellcheck source=versions.env
source "$here/versions.env"

cache="${MARKETPLACE_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/marketplace-fleet}"
key="k8s-${KUBERNETES_VERSION}-etcd-${ETCD_VERSION}-$(cat "$here/k8s-bundle/go.mod" "$here/k8s-bundle/go.sum" "$here/k8s-bundle/main.go" | sha256sum | cut -c1-12)"
bin="$cache/$key/bin"

if [[ -x "$bin/k8s-bundle" ]]; then
  echo "$bin"
  exit 0
fi

mkdir -p "$bin"
# One build at a time per key: a concurrent caller waits for it, then reuses it.
exec 9>"$cache/$key.lock"
flock 9
if [[ -x "$bin/k8s-bundle" ]]; then
  echo "$bin"
  exit 0
fi
minor="${KUBERNETES_VERSION#v1.}"; minor="${minor%%.*}"
pkg=k8s.io/component-base/version
ldflags="-s -w \
  -X $pkg.gitVersion=$KUBERNETES_VERSION \
  -X $pkg.gitMajor=1 -X $pkg.gitMinor=$minor \
  -X $pkg.gitTreeState=clean \
  -X $pkg.buildDate=1970-01-01T00:00:00Z \
  -X k8s.io/client-go/pkg/version.gitVersion=$KUBERNETES_VERSION \
  -X k8s.io/client-go/pkg/version.gitMajor=1 -X k8s.io/client-go/pkg/version.gitMinor=$minor"

echo "building the control plane ($KUBERNETES_VERSION, etcd $ETCD_VERSION) into $bin; a cold build takes 20-35 min on 2 cores" >&2
start=$SECONDS
(
  cd "$here/k8s-bundle"
  export CGO_ENABLED=0 GOFLAGS=-mod=mod
  go build -trimpath -ldflags "$ldflags" -o "$bin/k8s-bundle.tmp" .
)
mv "$bin/k8s-bundle.tmp" "$bin/k8s-bundle"
for name in etcd kube-apiserver kube-controller-manager kube-scheduler kubectl; do
  ln -sf k8s-bundle "$bin/$name"
done
echo "built in $((SECONDS - start)) s" >&2
echo "$bin"
