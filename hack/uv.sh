#!/usr/bin/env bash
# Print the path of the pinned uv (UV_VERSION in hack/versions.env), installing
# it from PyPI into a small bootstrap venv in the cache the first time.
# Idempotent; a flock makes concurrent first runs wait for one install.
#
#   "$(hack/uv.sh)" lock        # or: hack/uv.sh exec lock
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
# shellcheck source=versions.env
source "$root/hack/versions.env"
cache="${MARKETPLACE_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/marketplace-fleet}"
home="$cache/uv-$UV_VERSION"
if [[ ! -f "$home/.installed" ]]; then
  mkdir -p "$cache"
  exec 9>"$home.lock"
  flock 9
  if [[ ! -f "$home/.installed" ]]; then
    python="${PYTHON:-python3.11}"
    command -v "$python" >/dev/null || python=python3
    rm -rf "$home"
    "$python" -m venv "$home"
    "$home/bin/python" -m pip install --quiet --disable-pip-version-check "uv==$UV_VERSION" >&2
    touch "$home/.installed"
  fi
  exec 9>&-
fi
if [[ "${1:-}" == exec ]]; then
  shift
  exec "$home/bin/uv" "$@"
fi
echo "$home/bin/uv"
