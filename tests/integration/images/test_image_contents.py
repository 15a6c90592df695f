"""What each image holds: the node image carries the node and its protocol only.

The node image is the fleet's largest footprint (one per MarketplaceNode), so the
operator's dependencies (kopf, the Kubernetes client) and the project's test and
local-kubelet code must stay out of it (#16). Read from the image archives
hack/images.sh writes, layer by layer, without running a container.
"""

from __future__ import annotations

import json
import os
import re
import tarfile
from pathlib import Path

import pytest

from .conftest import Images

pytestmark = pytest.mark.skipif(
    not os.environ.get("MARKETPLACE_TEST_IMAGES"),
    reason="image tests build images: run `make test-images`",
)

SITE = re.compile(r"^opt/venv/lib/python3\.\d+/site-packages/([^/]+)/")


def site_packages(archive: Path) -> set[str]:
    """Top-level names under the image venv's site-packages, over every layer."""
    names: set[str] = set()
    with tarfile.open(archive) as image:
        manifest = image.extractfile("manifest.json")
        assert manifest is not None
        (entry,) = json.load(manifest)
        for layer_name in entry["Layers"]:
            layer = image.extractfile(layer_name)
            assert layer is not None
            with tarfile.open(fileobj=layer) as files:
                for member in files:
                    if match := SITE.match(member.name.removeprefix("./")):
                        names.add(match.group(1).lower())
    return names


def archive_of(images: Images, kind: str) -> Path:
    (archive,) = (a for a in images.archives if a.name.startswith(f"{kind}-"))
    return archive


def test_node_image_holds_the_node_and_not_the_operator(images: Images) -> None:
    packages = site_packages(archive_of(images, "node"))
    assert {"marketplace_node", "marketplace_protocol", "aiohttp", "pydantic"} <= packages
    unwanted = {"kopf", "kubernetes", "kubernetes_asyncio", "marketplace_operator", "local_kubelet"}
    assert not packages & unwanted, sorted(packages & unwanted)
    # Nothing to build or install with at run time: no test code, no pip, no setuptools.
    tooling = ("pytest", "_pytest", "tests", "pip", "setuptools", "pkg_resources")
    assert not {p for p in packages if p.startswith(tooling)}


def test_operator_image_holds_the_operator(images: Images) -> None:
    packages = site_packages(archive_of(images, "operator"))
    assert {"marketplace_operator", "marketplace_protocol", "kopf", "kubernetes"} <= packages
    assert not packages & {"marketplace_node", "local_kubelet"}, sorted(packages)
