#!/usr/bin/env bash
# Create or refresh the project's virtualenv (.venv) idempotently; fast when
# nothing changed (keyed by the hash of pyproject.toml).
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
venv="$root/.venv"
stamp="$venv/.installed-$(sha256sum "$root/pyproject.toml" | cut -c1-16)"
if [[ -f "$stamp" ]]; then exit 0; fi
python="${PYTHON:-python3.11}"
command -v "$python" >/dev/null || python=python3
[[ -x "$venv/bin/python" ]] || "$python" -m venv "$venv"
"$venv/bin/python" -m pip install --quiet --disable-pip-version-check --upgrade pip
"$venv/bin/python" -m pip install --quiet --disable-pip-version-check -e "$root[dev]"
rm -f "$venv"/.installed-*
touch "$stamp"
