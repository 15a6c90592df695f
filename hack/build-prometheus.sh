#!/usr/bin/env bash
# Build promtool (rule checks and rule unit tests) and Prometheus (the scrape
# test against the local cluster) from the Prometheus Go module, cached outside
# git keyed by the pinned version (hack/go-build.sh).
#
#   hack/build-prometheus.sh     # prints the bin directory (promtool, prometheus); builds only what is missing
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
# shellcheck source=versions.env
source "$here/versions.env"
exec "$here/go-build.sh" "prometheus-$PROMETHEUS_MODULE_VERSION" \
  github.com/prometheus/prometheus "$PROMETHEUS_MODULE_VERSION" \
  promtool=./cmd/promtool prometheus=./cmd/prometheus
