"""The policy ConfigMap content: plain JSON when small, gzip when large, always under 1 MiB."""

from __future__ import annotations

import base64
import gzip
import json
import random
from datetime import UTC, datetime, timedelta

import pytest
from marketplace_node.admin.models import BanEntry, PolicyDocument
from marketplace_operator.policy.versioning import HASH_ANNOTATION, VERSION_ANNOTATION
from marketplace_operator.render.policy import (
    COMPRESS_ABOVE,
    POLICY_GZ_KEY,
    POLICY_KEY,
    PolicyTooLarge,
    configmap_patch,
    read_policy,
    render_policy,
    request_body,
)

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
    assert rendered.data == {POLICY_KEY: None}
    packed = rendered.binary_data[POLICY_GZ_KEY]
    assert packed is not None
    raw = gzip.decompress(base64.b64decode(packed))
    assert len(raw) > COMPRESS_ABOVE
    assert PolicyDocument.model_validate_json(raw) == doc


def test_ten_thousand_random_peer_ids_fit_the_configmap() -> None:
    """Worst realistic case: random base32 peer ids (gzip gains little on them)."""
    rnd = random.Random(1)
    alphabet = "abcdefghijklmnopqrstuvwxyz234567"
    doc = PolicyDocument(
        version=1,
        bans=[
            BanEntry(
                peer_id="".join(rnd.choice(alphabet) for _ in range(52)),
                reason="rate_limited: search flood",
                expires_at=NOW + timedelta(seconds=rnd.randint(60, 86_400)),
                source=f"banlist/big-{i // 2000}",
            )
            for i in range(10_000)
        ],
    )
    rendered = render_policy(doc)
    assert rendered.compressed
    assert rendered.stored_bytes < 600 * 1024, rendered.stored_bytes  # measured: ~556 KiB


def test_rendering_is_deterministic() -> None:
    assert render_policy(document(10_000)) == render_policy(document(10_000))


def test_too_large_is_refused_not_truncated() -> None:
    # Incompressible reasons: random-looking text defeats gzip.
    rnd = random.Random(4)
    doc = PolicyDocument(
        version=1,
        bans=[
            BanEntry(
                peer_id=f"peer{i:010d}",
                reason="".join(
                    rnd.choice("abcdefghijklmnopqrstuvwxyz0123456789") for _ in range(250)
                ),
            )
            for i in range(6_000)
        ],
    )
    with pytest.raises(PolicyTooLarge, match="limit"):
        render_policy(doc)


@pytest.mark.parametrize("bans", [3, 10_000])
def test_read_policy_inverts_render(bans: int) -> None:
    doc = document(bans)
    rendered = render_policy(doc)
    data = {k: v for k, v in rendered.data.items() if v is not None}
    binary = {k: v for k, v in rendered.binary_data.items() if v is not None}
    raw = read_policy(data, binary)
    assert raw is not None
    assert PolicyDocument.model_validate_json(raw) == doc
    assert read_policy({}, {}) is None


def test_configmap_patch_touches_only_policy_keys_and_version_annotations() -> None:
    patch = configmap_patch(document(2))
    assert patch["metadata"] == {
        "annotations": {VERSION_ANNOTATION: "7", HASH_ANNOTATION: "sha256:" + "0" * 64}
    }
    assert set(patch["data"]) == {POLICY_KEY}
    assert set(patch["binaryData"]) == {POLICY_GZ_KEY}
    json.dumps(patch)  # a JSON merge patch, serialisable as is


def test_request_body_is_gzipped_above_the_threshold() -> None:
    small, encoding = request_body(document(3))
    assert encoding is None
    assert PolicyDocument.model_validate_json(small).version == 7
    big, encoding = request_body(document(10_000))
    assert encoding == "gzip"
    assert len(big) < len(gzip.decompress(big)) / 4
