#!/usr/bin/env bash
# Build Flux's source-controller and kustomize-controller from their Go modules
# (hack/go-build.sh), cached outside git keyed by the pinned versions, and print
# the bin directory. Flux's CRDs come from the same modules:
#
#   hack/build-flux.sh          # prints e.g. ~/.cache/marketplace-fleet/flux-sc-v1.9.6-kc-v1.9.6/bin
#   hack/build-flux.sh --crds   # prints the CRD files of both modules, one a line
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
# shellcheck source=versions.env
source "$here/versions.env"

if [[ "${1:-}" == --crds ]]; then
  for module in "source-controller@$FLUX_SOURCE_CONTROLLER_VERSION" \
    "kustomize-controller@$FLUX_KUSTOMIZE_CONTROLLER_VERSION"; do
    dir="$(GOWORK=off go mod download -json "github.com/fluxcd/$module" |
      python3 -c 'import json, sys; print(json.load(sys.stdin)["Dir"])')"
    ls "$dir"/config/crd/bases/*.yaml
  done
  exit 0
fi

key="flux-sc-$FLUX_SOURCE_CONTROLLER_VERSION-kc-$FLUX_KUSTOMIZE_CONTROLLER_VERSION"
"$here/go-build.sh" --replace "$FLUX_ARTIFACT_REPLACE" "$key" github.com/fluxcd/source-controller \
  "$FLUX_SOURCE_CONTROLLER_VERSION" source-controller=. >/dev/null
exec "$here/go-build.sh" "$key" github.com/fluxcd/kustomize-controller \
  "$FLUX_KUSTOMIZE_CONTROLLER_VERSION" kustomize-controller=.
