#!/usr/bin/env bash
# Resolve pyproject.toml's dependencies into the committed lock files:
#
#   lock/dev.txt       everything .venv gets (runtime + the dev extra): hack/venv.sh
#   lock/node.txt      what the node image gets (node/pyproject.toml and the protocol),
#   lock/operator.txt  and the operator image: the same versions (constrained by dev.txt)
#   lock/lowest.txt    every direct dependency at its floor (uv's lowest-direct
#                      resolution): .venv-lowest, `make test-lowest`
#
# Each lists exact versions with their sha256 hashes for every platform
# (`uv pip compile --universal --generate-hashes`), so an upstream release can
# change neither CI nor an image. Re-running keeps every pin that still fits
# (uv reads the existing file as preferences): only what an edit to the
# dependency lists requires moves.
#
#   hack/lock.sh                              # after editing dependencies (make lock)
#   hack/lock.sh --upgrade-package aiohttp    # move one package on purpose
#   hack/lock.sh --upgrade                    # move everything
#   hack/lock.sh --check                      # exit 1 if pyproject changed since (offline)
#
# Why not uv.lock and `uv sync`: see docs/install.md, "Locked dependencies".
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
lock="$root/lock"
python="${PYTHON:-python3.11}"
command -v "$python" >/dev/null || python=python3

# The hash of what the lock is resolved from: requires-python and the
# dependency lists of each pyproject.toml (other edits leave the lock valid).
inputs_hash() {
  "$python" - "$root"/pyproject.toml "$root"/{protocol,node,operator}/pyproject.toml <<'PY'
import hashlib, json, sys, tomllib
keys = ("requires-python", "dependencies", "optional-dependencies")
inputs = []
for name in sys.argv[1:]:
    with open(name, "rb") as f:
        project = tomllib.load(f)["project"]
    inputs.append([project.get(k) for k in keys])
print(hashlib.sha256(json.dumps(inputs, sort_keys=True).encode()).hexdigest())
PY
}

if [[ "${1:-}" == --check ]]; then
  if [[ "$(cat "$lock/inputs.sha256" 2>/dev/null)" != "$(inputs_hash)" ]]; then
    echo "lock/ is stale: pyproject.toml's dependencies changed; run 'make lock' and commit lock/" >&2
    exit 1
  fi
  exit 0
fi

uv="$("$root/hack/uv.sh")"
compile=("$uv" pip compile --quiet --universal --generate-hashes --python-version 3.11)
cd "$root"
mkdir -p lock
"${compile[@]}" "$@" pyproject.toml --extra dev -o lock/dev.txt
for image in node operator; do
  "${compile[@]}" "$image/pyproject.toml" -c lock/dev.txt \
    --no-emit-package marketplace-protocol -o "lock/$image.txt"
done
"${compile[@]}" --resolution lowest-direct pyproject.toml --extra dev -o lock/lowest.txt
inputs_hash >lock/inputs.sha256
