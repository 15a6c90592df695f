#!/usr/bin/env bash
# cert-manager's CRDs (Certificate, Issuer, ClusterIssuer) from the cert-manager Go module
# (deploy/crds, the schemas cert-manager itself is generated with), cached outside git
# keyed by the pinned version, as hack/build-prometheus.sh does for promtool. The TLS
# end-to-end test installs them to exercise the operator's cert-manager path against
# cert-manager's real schemas (docs/operations.md, "TLS").
#
#   hack/cert-manager-crds.sh       # prints the directory of the three YAML files
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
# shellcheck source=versions.env
source "$here/versions.env"

cache="${MARKETPLACE_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/marketplace-fleet}"
dir="$cache/cert-manager-$CERT_MANAGER_VERSION/crds"
if [[ -f "$dir/.complete" ]]; then
  echo "$dir"
  exit 0
fi
mkdir -p "$dir"
exec 9>"$dir.lock"
flock 9
if [[ -f "$dir/.complete" ]]; then
  echo "$dir"
  exit 0
fi
echo "fetching cert-manager's CRDs (github.com/cert-manager/cert-manager $CERT_MANAGER_VERSION)" >&2
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
module="$(cd "$work" && go mod download -json "github.com/cert-manager/cert-manager@$CERT_MANAGER_VERSION" \
  | python3 -c 'import json, sys; print(json.load(sys.stdin)["Dir"])')"
for kind in certificates issuers clusterissuers; do
  cp "$module/deploy/crds/cert-manager.io_$kind.yaml" "$dir/"
done
touch "$dir/.complete"
echo "$dir"
