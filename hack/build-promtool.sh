#!/usr/bin/env bash
# Build promtool (rule checks and rule unit tests) from the Prometheus Go module,
# cached outside git keyed by the pinned version, as hack/build-k8s.sh does for
# the control plane.
#
#   hack/build-promtool.sh          # prints the path of promtool; builds only if missing
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
# shellcheck source=versions.env
source "$here/versions.env"

cache="${MARKETPLACE_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/marketplace-fleet}"
dir="$cache/prometheus-$PROMETHEUS_MODULE_VERSION"
bin="$dir/bin/promtool"
if [[ -x "$bin" ]]; then
  echo "$bin"
  exit 0
fi
mkdir -p "$dir/bin"
exec 9>"$dir.lock"
flock 9
if [[ -x "$bin" ]]; then
  echo "$bin"
  exit 0
fi
echo "building promtool (github.com/prometheus/prometheus $PROMETHEUS_MODULE_VERSION) into $dir/bin" >&2
start=$SECONDS
CGO_ENABLED=0 GOBIN="$dir/bin.tmp" GOFLAGS=-mod=mod \
  go install -trimpath -ldflags "-s -w" \
  "github.com/prometheus/prometheus/cmd/promtool@$PROMETHEUS_MODULE_VERSION"
mv "$dir/bin.tmp/promtool" "$bin"
rmdir "$dir/bin.tmp"
echo "built in $((SECONDS - start)) s" >&2
echo "$bin"
