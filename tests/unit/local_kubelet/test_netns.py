"""The CNI config each local Node hands the bridge plugin under POD_NETWORK=netns."""

from __future__ import annotations

import ipaddress
from pathlib import Path

from local_kubelet.netns import cni_config

CLUSTER = ipaddress.IPv4Network("10.176.0.0/16")


def _ranges(node: str) -> dict[str, str]:
    config = cni_config(
        name="mf", bridge="mfp-1", cluster=CLUSTER,
        node=ipaddress.IPv4Network(node), data_dir=Path("/ipam"),
    )  # fmt: skip
    assert config["bridge"] == "mfp-1"
    assert config["isGateway"] is True
    return dict(config["ipam"]["ranges"][0][0])


def test_every_node_shares_the_cluster_prefix_and_gateway() -> None:
    first, second = _ranges("10.176.0.0/20"), _ranges("10.176.16.0/20")
    # One prefix and one gateway: pods of different Nodes are on one link.
    assert first["subnet"] == second["subnet"] == "10.176.0.0/16"
    assert first["gateway"] == second["gateway"] == "10.176.0.1"


def test_each_node_hands_out_only_its_own_slice_past_the_gateway() -> None:
    first, second = _ranges("10.176.0.0/20"), _ranges("10.176.16.0/20")
    assert (first["rangeStart"], first["rangeEnd"]) == ("10.176.0.2", "10.176.15.254")
    assert (second["rangeStart"], second["rangeEnd"]) == ("10.176.16.2", "10.176.31.254")
