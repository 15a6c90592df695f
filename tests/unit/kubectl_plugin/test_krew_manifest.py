"""The krew manifest names the console script the project installs, at the project's version."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[3]


def test_manifest_matches_the_installed_entry_point_and_version() -> None:
    manifest = yaml.safe_load((ROOT / "plugin" / "krew" / "marketplace.yaml").read_text())
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    assert manifest["apiVersion"] == "krew.googlecontainertools.github.com/v1alpha2"
    assert manifest["kind"] == "Plugin"
    assert manifest["metadata"]["name"] == "marketplace"  # `kubectl marketplace`
    spec = manifest["spec"]
    assert spec["version"] == f"v{project['version']}"
    assert len(spec["shortDescription"]) <= 60
    assert project["scripts"]["kubectl-marketplace"] == "marketplace_kubectl.cli:main"
    for platform in spec["platforms"]:
        assert platform["bin"] == "kubectl-marketplace"
        assert set(platform["selector"]["matchLabels"]) == {"os", "arch"}
        assert re.fullmatch(r"[0-9a-f]{64}", platform["sha256"])
        assert platform["uri"].endswith(
            f"/v{project['version']}/kubectl-marketplace-"
            f"{platform['selector']['matchLabels']['os']}-"
            f"{platform['selector']['matchLabels']['arch']}.tar.gz"
        )
