#!/usr/bin/env bash
# The fleet before the two listeners (#14 item 4), for the upgrade test
# (tests/e2e/realnode/test_realnode_upgrade.py): the sources of the last commit that
# served everything on one port, its node and operator images built by today's
# hack/images.sh (its own ran pip from the venv, which no longer holds pip), and a
# virtualenv with its operator. Cached by commit: a second run builds nothing.
#
#   hack/one-port.sh    # prints: NODE_IMAGE_REF NODE_ARCHIVE OPERATOR_BIN CRD_DIR
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
commit=e74ae3c9612ae2ec439d2c0237bc910493031ff3  # the parent of 0a6f045 (two listeners)
cache="${MARKETPLACE_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/marketplace-fleet}/one-port-${commit:0:12}"
src="$cache/src" venv="$cache/venv"
mkdir -p "$cache"
exec 9>"$cache/lock"
flock 9

if [[ "$(git -C "$src" rev-parse HEAD 2>/dev/null)" != "$commit" ]]; then
  rm -rf "$src"
  git clone --quiet --shared --no-checkout "$root" "$src"
  git -C "$src" checkout --quiet --detach "$commit"
fi
# Not under the image inputs, so the image tag stays the commit's (versions.env: the pip
# and uv that today's scripts pin).
cp "$root/hack/images.sh" "$root/hack/uv.sh" "$root/hack/versions.env" "$src/hack/"

refs="$(IMAGE_REGISTRY=localhost/one-port MARKETPLACE_CACHE="$cache" "$src/hack/images.sh")"
node_ref="$(grep '/node:' <<<"$refs")"
node_archive="$cache/images/node-${node_ref##*:}.tar"

if [[ ! -f "$venv/.installed" ]]; then
  uv="$("$root/hack/uv.sh")"
  rm -rf "$venv"
  "$uv" venv --quiet --python "${PYTHON:-python3.11}" "$venv" >&2
  UV_LINK_MODE=copy "$uv" pip sync --quiet --python "$venv/bin/python" "$src/lock/operator.txt" >&2
  UV_LINK_MODE=copy "$uv" pip install --quiet --python "$venv/bin/python" --no-deps \
    "$src/protocol" "$src/operator" >&2
  touch "$venv/.installed"
fi
echo "$node_ref $node_archive $venv/bin/marketplace-operator $src/crds"
