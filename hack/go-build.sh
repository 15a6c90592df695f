#!/usr/bin/env bash
# Build Go binaries from a published Go module at a pinned version, cached
# outside git (as hack/build-k8s.sh does for the control plane). The one way
# this project turns "module M at version V" into binaries (promtool and
# Prometheus: hack/build-prometheus.sh; Flux's controllers: hack/build-flux.sh).
#
#   hack/go-build.sh [--replace OLD=NEW@V]... KEY MODULE VERSION NAME=PKG...
#                                                      # prints the bin directory
#
#   KEY       cache directory name, e.g. prometheus-v0.316.0 (~/.cache/marketplace-fleet/KEY/bin)
#   NAME=PKG  binary name and package directory inside the module, e.g. promtool=./cmd/promtool
#   --replace a go.mod replace for a dependency version the module proxy refuses (say
#             why next to the caller's pin in versions.env); a new one needs a new KEY
#
# Only missing binaries are built, one build per KEY at a time (flock): a
# concurrent caller waits, then reuses the result. The module is built with
# its own go.mod (so its replace directives hold), from a writable copy of the
# module cache's tree; a replace pointing into the module's own directory
# (Flux's `api => ./api`) names a nested module that the module zip leaves out,
# so it is dropped and the released version the go.mod requires is used.
set -euo pipefail
replaces=()
while [[ "${1:-}" == --replace ]]; do
  replaces+=("$2")
  shift 2
done
if (($# < 4)); then
  sed -n '7,14p' "$0" >&2
  exit 2
fi
key="$1" module="$2" version="$3"
shift 3

cache="${MARKETPLACE_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/marketplace-fleet}"
dir="$cache/$key"
bin="$dir/bin"

missing() {
  local spec
  for spec in "$@"; do
    [[ -x "$bin/${spec%%=*}" ]] || return 0
  done
  return 1
}

if ! missing "$@"; then
  echo "$bin"
  exit 0
fi
mkdir -p "$bin"
exec 9>"$dir.lock"
flock 9
if ! missing "$@"; then
  echo "$bin"
  exit 0
fi

export GOWORK=off CGO_ENABLED=0 GOFLAGS="${GOFLAGS:-} -mod=mod -buildvcs=false"
src="$(go mod download -json "$module@$version" | python3 -c 'import json, sys; print(json.load(sys.stdin)["Dir"])')"
work="$(mktemp -d)"
trap 'chmod -R u+w "$work"; rm -rf "$work"' EXIT
cp -r "$src/." "$work/"
chmod -R u+w "$work"
cd "$work"
go mod edit -json | python3 -c '
import json, sys
for r in json.load(sys.stdin).get("Replace") or []:
    if r["New"]["Path"].startswith("./"):
        print(r["Old"]["Path"])
' | while read -r local; do go mod edit -dropreplace "$local"; done
for replace in "${replaces[@]}"; do
  go mod edit -replace "$replace"
done

for spec in "$@"; do
  name="${spec%%=*}" pkg="${spec#*=}"
  [[ -x "$bin/$name" ]] && continue
  echo "building $name ($module $version, $pkg) into $bin" >&2
  start=$SECONDS
  go build -trimpath -ldflags "-s -w" -o "$bin/$name.tmp" "$pkg"
  mv "$bin/$name.tmp" "$bin/$name"
  echo "built $name in $((SECONDS - start)) s" >&2
done
echo "$bin"
