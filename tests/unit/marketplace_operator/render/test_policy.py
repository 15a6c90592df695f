"""The policy ConfigMap content: plain JSON when small, gzip when large, gzip parts in shard
ConfigMaps when larger still; every ConfigMap under the API server's 1 MiB."""

from __future__ import annotations

import asyncio
import base64
import gzip
import json
import random
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, cast

import pytest
from marketplace_node.policy import watch
from marketplace_operator import errors as op_errors
from marketplace_operator import k8s
from marketplace_operator.handlers.policy import KubeCluster
from marketplace_operator.model.mnode import MarketplaceNodeSpec
from marketplace_operator.policy.ports import FleetKey
from marketplace_operator.policy.versioning import HASH_ANNOTATION, VERSION_ANNOTATION
from marketplace_operator.render import names
from marketplace_operator.render.pod import PodInputs, pod
from marketplace_operator.render.policy import (
    COMPRESS_ABOVE,
    CONFIGMAP_LIMIT,
    MANIFEST_KEY,
    POLICY_GZ_KEY,
    POLICY_KEY,
    SHARDS,
    VALUE_BUDGET,
    PolicyTooLarge,
    RenderedPolicy,
    configmap_patch,
    read_policy,
    render_policy,
    request_body,
    shard_patches,
)
from marketplace_protocol.admin import BanEntry, PolicyDocument
from marketplace_protocol.parts import MAX_PARTS, PolicyManifest, TornParts, part_name

NOW = datetime(2026, 11, 25, 12, 0, tzinfo=UTC)


def document(bans: int, *, reason: str = "abuse of the search endpoint") -> PolicyDocument:
    """Realistic bans: 52-character peer ids (Ed25519 base32), a reason, expiry and source."""
    return PolicyDocument(
        version=7,
        hash="sha256:" + "0" * 64,
        bans=[
            BanEntry(
                peer_id=f"12D3KooW{i:044d}",
                reason=reason,
                expires_at=NOW + timedelta(seconds=i),
                source=f"banlist/big-{i // 2000}",
            )
            for i in range(bans)
        ],
    )


def test_small_policy_is_plain_json_and_removes_the_gzip_key() -> None:
    doc = document(3)
    rendered = render_policy(doc)
    assert not rendered.compressed
    assert rendered.binary_data == {POLICY_GZ_KEY: None}
    text = rendered.data[POLICY_KEY]
    assert text is not None
    assert PolicyDocument.model_validate_json(text) == doc


def test_large_policy_is_gzipped_base64_and_removes_the_json_key() -> None:
    doc = document(10_000)
    rendered = render_policy(doc)
    assert rendered.compressed
    assert rendered.data == {POLICY_KEY: None, MANIFEST_KEY: None}
    packed = rendered.binary_data[POLICY_GZ_KEY]
    assert packed is not None
    raw = gzip.decompress(base64.b64decode(packed))
    assert len(raw) > COMPRESS_ABOVE
    assert PolicyDocument.model_validate_json(raw) == doc


def random_bans(count: int, *, seed: int = 1) -> PolicyDocument:
    """Worst realistic case: random base32 peer ids (gzip gains little on them)."""
    rnd = random.Random(seed)
    alphabet = "abcdefghijklmnopqrstuvwxyz234567"
    return PolicyDocument(
        version=1,
        hash="sha256:" + "1" * 64,
        bans=[
            BanEntry(
                peer_id="".join(rnd.choice(alphabet) for _ in range(52)),
                reason="rate_limited: search flood",
                expires_at=NOW + timedelta(seconds=rnd.randint(60, 86_400)),
                source=f"banlist/big-{i // 2000}",
            )
            for i in range(count)
        ],
    )


def stored(rendered: RenderedPolicy) -> tuple[dict[str, str], dict[str, str]]:
    """The fleet ConfigMap's data and binaryData once the merge patch removed the nulls."""
    data = {k: v for k, v in rendered.data.items() if v is not None}
    binary = {k: v for k, v in rendered.binary_data.items() if v is not None}
    return data, binary


def api_size(data: dict[str, str], binary: dict[str, str]) -> int:
    """What the API server counts against 1 MiB: values only, binaryData decoded."""
    return sum(len(v.encode()) for v in data.values()) + sum(
        len(base64.b64decode(v)) for v in binary.values()
    )


def test_ten_thousand_random_peer_ids_fit_one_configmap() -> None:
    rendered = render_policy(random_bans(10_000))
    assert rendered.compressed
    assert not rendered.shards
    # measured: 427,291 bytes of gzip (569,724 as base64, which the API server does not count)
    assert rendered.stored_bytes < 450_000, rendered.stored_bytes
    assert rendered.stored_bytes == api_size(*stored(rendered))


def test_fifty_thousand_random_peer_ids_fit_the_shards_with_margin() -> None:
    """The node's cap (MAX_POLICY_BANS) reaches a starting node through its volume."""
    doc = random_bans(50_000)
    rendered = render_policy(doc)
    data, binary = stored(rendered)
    assert set(data) == {MANIFEST_KEY}
    assert not binary
    manifest = PolicyManifest.model_validate_json(data[MANIFEST_KEY])
    assert 1 < manifest.parts == len(rendered.shards) <= SHARDS
    assert (manifest.version, manifest.hash) == (doc.version, doc.hash)
    sizes = [len(base64.b64decode(part)) for part in rendered.shards]
    assert sum(sizes) == manifest.size == rendered.stored_bytes
    assert max(sizes) <= VALUE_BUDGET < CONFIGMAP_LIMIT
    assert max(sizes) - min(sizes) <= 1  # equal parts: the same headroom in every shard
    # measured: 2,134,269 bytes of gzip, 3 parts; the 3 shards hold 2,949,120 (~38% margin)
    assert rendered.stored_bytes < 0.8 * SHARDS * VALUE_BUDGET, rendered.stored_bytes
    shards = {i: {part_name(i): part} for i, part in enumerate(rendered.shards, start=1)}
    raw = read_policy(data, binary, shards)
    assert raw is not None
    assert PolicyDocument.model_validate_json(raw) == doc


def test_rendering_is_deterministic() -> None:
    assert render_policy(document(10_000)) == render_policy(document(10_000))


def test_too_large_is_refused_not_truncated() -> None:
    # Random hex reasons defeat gzip: ~7 MB of JSON compresses to more than the shards hold.
    rnd = random.Random(4)
    doc = PolicyDocument(
        version=1,
        bans=[
            BanEntry(peer_id=f"peer{i:010d}", reason=rnd.randbytes(125).hex())
            for i in range(25_000)
        ],
    )
    with pytest.raises(PolicyTooLarge, match="hold at most"):
        render_policy(doc)


def stream_bytes(doc: PolicyDocument) -> int:
    rendered = render_policy(doc)
    assert rendered.compressed
    assert not rendered.shards
    return rendered.stored_bytes


@pytest.mark.parametrize(
    ("budget_of", "shards", "parts"),
    [
        (lambda n: n, 3, 0),  # exactly one ConfigMap's worth: the single gzip key
        (lambda n: n - 1, 3, 2),  # one byte more: two parts
        (lambda n: -(-n // 3), 3, 3),  # exactly three parts' worth
        (lambda n: -(-n // 3) - 1, 3, None),  # one byte over three parts: refused
        (lambda n: -(-n // 2), 2, 2),
        (lambda n: -(-n // 2) - 1, 2, None),
        (lambda n: -(-n // 7), 8, 7),  # no more parts than needed
    ],
)
def test_parts_at_the_budget_boundaries(
    budget_of: Callable[[int], int], shards: int, parts: int | None
) -> None:
    doc = document(5_000)
    total = stream_bytes(doc)
    budget = budget_of(total)
    if parts is None:
        with pytest.raises(PolicyTooLarge):
            render_policy(doc, budget=budget, shards=shards)
        return
    rendered = render_policy(doc, budget=budget, shards=shards)
    assert len(rendered.shards) == parts
    sizes = [len(base64.b64decode(p)) for p in rendered.shards]
    assert all(size <= budget for size in sizes)
    assert rendered.stored_bytes == total
    data, binary = stored(rendered)
    assert (MANIFEST_KEY in data) == (parts > 0)
    assert (POLICY_GZ_KEY in binary) == (parts == 0)
    found = {i: {part_name(i): p} for i, p in enumerate(rendered.shards, start=1)}
    raw = read_policy(data, binary, found)
    assert raw is not None
    assert PolicyDocument.model_validate_json(raw) == doc


def sharded(doc: PolicyDocument) -> RenderedPolicy:
    rendered = render_policy(doc, budget=-(-stream_bytes(doc) // 3), shards=3)
    assert len(rendered.shards) == 3
    return rendered


def test_read_policy_refuses_missing_stale_and_reordered_parts() -> None:
    doc, older = document(5_000), document(5_000, reason="an older reason")
    rendered, stale = sharded(doc), sharded(older)
    data, binary = stored(rendered)
    parts = {i: {part_name(i): p} for i, p in enumerate(rendered.shards, start=1)}
    with pytest.raises(TornParts):  # shard 3 not there yet
        read_policy(data, binary, {1: parts[1], 2: parts[2]})
    with pytest.raises(TornParts):  # shard 2 still holds the older policy's part
        read_policy(data, binary, {**parts, 2: {part_name(2): stale.shards[1]}})
    with pytest.raises(TornParts):  # parts swapped
        read_policy(
            data,
            binary,
            {**parts, 1: {part_name(1): rendered.shards[1]}, 2: {part_name(2): rendered.shards[0]}},
        )


def test_shard_patches_carry_one_part_and_the_version() -> None:
    doc = document(5_000)
    rendered = sharded(doc)
    patches = shard_patches(doc, rendered)
    assert [p["binaryData"] for p in patches] == [
        {part_name(i): part} for i, part in enumerate(rendered.shards, start=1)
    ]
    for p in patches:
        assert p["metadata"] == {
            "annotations": {VERSION_ANNOTATION: "7", HASH_ANNOTATION: "sha256:" + "0" * 64}
        }
        json.dumps(p)
    assert shard_patches(doc, render_policy(doc)) == []  # fits one ConfigMap: no shard writes
    main = configmap_patch(doc, rendered=rendered)
    assert main["data"][POLICY_KEY] is None
    assert main["binaryData"] == {POLICY_GZ_KEY: None}
    manifest = PolicyManifest.model_validate_json(main["data"][MANIFEST_KEY])
    assert manifest.parts == 3 <= MAX_PARTS


def test_a_node_reads_the_rendered_configmaps_from_its_projected_volume(tmp_path: Path) -> None:
    """Operator render → the files the kubelet projects → the node's reader: the same doc."""
    doc = document(5_000)
    rendered = sharded(doc)
    data, binary = stored(rendered)
    files = {k: v.encode() for k, v in data.items()} | {
        k: base64.b64decode(v) for k, v in binary.items()
    }
    for i, part in enumerate(rendered.shards, start=1):
        files[part_name(i)] = base64.b64decode(part)
    for name, content in files.items():
        (tmp_path / name).write_bytes(content)
    assert watch.read_policy(tmp_path) == doc


def test_pods_project_the_fleet_configmap_and_optional_shards_into_one_directory() -> None:
    ref = names.NodeRef(name="n1", namespace="ns", uid="u1", fleet="blue")
    spec = MarketplaceNodeSpec.model_validate({"fleet": "blue"})
    rendered = pod(ref, PodInputs(image="example/node:1", spec=spec))
    (volume,) = [v for v in rendered["spec"]["volumes"] if v["name"] == "policy"]
    sources = [s["configMap"] for s in volume["projected"]["sources"]]
    assert sources[0] == {"name": "blue-policy"}  # required: a pod waits for its fleet's
    assert sources[1:] == [
        {"name": f"blue-policy-{i}", "optional": True} for i in range(1, SHARDS + 1)
    ]
    assert all("items" not in s for s in sources)  # every key, so parts land beside the manifest


@pytest.mark.parametrize("bans", [3, 10_000])
def test_read_policy_inverts_render(bans: int) -> None:
    doc = document(bans)
    raw = read_policy(*stored(render_policy(doc)))
    assert raw is not None
    assert PolicyDocument.model_validate_json(raw) == doc
    assert read_policy({}, {}) is None


def test_configmap_patch_touches_only_policy_keys_and_version_annotations() -> None:
    patch = configmap_patch(document(2))
    assert patch["metadata"] == {
        "annotations": {VERSION_ANNOTATION: "7", HASH_ANNOTATION: "sha256:" + "0" * 64}
    }
    assert patch["data"] == {POLICY_KEY: patch["data"][POLICY_KEY], MANIFEST_KEY: None}
    assert patch["binaryData"] == {POLICY_GZ_KEY: None}
    json.dumps(patch)  # a JSON merge patch, serialisable as is


def test_request_body_is_gzipped_above_the_threshold() -> None:
    small, encoding = request_body(document(3))
    assert encoding is None
    assert PolicyDocument.model_validate_json(small).version == 7
    big, encoding = request_body(document(10_000))
    assert encoding == "gzip"
    assert len(big) < len(gzip.decompress(big)) / 4


# --- the write: shards first, created on demand, the manifest last ---------------------------


class RecordingKube:
    """The three calls `KubeCluster.write_policy` makes, against a dict of ConfigMaps."""

    def __init__(self, *existing: str) -> None:
        self.objects: dict[str, dict[str, Any]] = {
            name: {"metadata": {"name": name, "uid": f"uid-{name}"}} for name in existing
        }
        self.calls: list[tuple[str, str]] = []

    async def get(self, res: k8s.Resource, namespace: str, name: str) -> dict[str, Any] | None:
        return self.objects.get(name)

    async def patch(
        self, res: k8s.Resource, namespace: str, name: str, patch: dict[str, Any]
    ) -> None:
        self.calls.append(("patch", name))
        if name not in self.objects:
            raise op_errors.NotFound(name)

    async def create(self, res: k8s.Resource, body: dict[str, Any]) -> dict[str, Any]:
        self.calls.append(("create", body["metadata"]["name"]))
        self.objects[body["metadata"]["name"]] = body
        return body


def write(kube: RecordingKube, doc: PolicyDocument, rendered: RenderedPolicy) -> None:
    cluster = KubeCluster(cast("k8s.Kube", kube))
    key = FleetKey(namespace="ns", fleet="blue")
    patch, shards = configmap_patch(doc, rendered=rendered), shard_patches(doc, rendered)
    asyncio.run(cluster.write_policy(key, patch, shards))


def test_shards_are_created_owned_by_the_fleet_configmap_and_written_before_it() -> None:
    doc = document(5_000)
    kube = RecordingKube("blue-policy", "blue-policy-2")
    write(kube, doc, sharded(doc))
    assert kube.calls == [
        ("patch", "blue-policy-1"),
        ("create", "blue-policy-1"),
        ("patch", "blue-policy-2"),  # exists already: patched in place
        ("patch", "blue-policy-3"),
        ("create", "blue-policy-3"),
        ("patch", "blue-policy"),  # the manifest last
    ]
    created = kube.objects["blue-policy-1"]
    assert created["metadata"]["labels"] == names.fleet_labels("blue")
    assert created["metadata"]["ownerReferences"] == [
        {
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "name": "blue-policy",
            "uid": "uid-blue-policy",
            "controller": False,
            "blockOwnerDeletion": False,
        }
    ]
    assert set(created["binaryData"]) == {part_name(1)}
    assert created["metadata"]["annotations"][VERSION_ANNOTATION] == "7"


def test_a_policy_that_fits_one_configmap_writes_no_shard() -> None:
    doc = document(5_000)
    kube = RecordingKube("blue-policy")
    write(kube, doc, render_policy(doc))
    assert kube.calls == [("patch", "blue-policy")]
