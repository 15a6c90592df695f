#!/usr/bin/env bash
# Create or refresh the project's virtualenv (.venv) from the lock: exactly the
# versions in lock/dev.txt, hash-checked (`uv pip sync` also removes anything
# else), then the project itself, editable. Fast when nothing changed (keyed by
# the hash of the lock and pyproject.toml).
#
# A lock older than pyproject.toml's dependency lists is refused: run
# `make lock` and commit lock/ (hack/lock.sh).
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
venv="${VENV:-$root/.venv}"
requirements="${REQUIREMENTS:-$root/lock/dev.txt}"
stamp="$venv/.installed-$(cat "$root/pyproject.toml" "$requirements" | sha256sum | cut -c1-16)"
if [[ -f "$stamp" ]]; then exit 0; fi
"$root/hack/lock.sh" --check
python="${PYTHON:-python3.11}"
command -v "$python" >/dev/null || python=python3
uv="$("$root/hack/uv.sh")"
[[ -x "$venv/bin/python" ]] || "$uv" venv --quiet --python "$python" "$venv"
# The uv cache and the venv may be on different filesystems: copy, quietly.
export UV_LINK_MODE=copy
"$uv" pip sync --quiet --python "$venv/bin/python" "$requirements"
"$uv" pip install --quiet --python "$venv/bin/python" --no-deps -e "$root"
rm -f "$venv"/.installed-*
touch "$stamp"
