"""The lean diff-base storage gives kopf exactly the essence its own storage builds."""

from __future__ import annotations

import copy
from typing import Any, cast

import kopf
import marketplace_operator.handlers  # noqa: F401 - registers the operator's handlers
import pytest
from marketplace_operator.diffbase import (
    ANY_GROUP,
    LeanAnnotationsDiffBaseStorage,
    LeanAnnotationsProgressStorage,
    diff_read,
    essential_groups,
    slim,
)

PREFIX = "marketplace.p2p.dev"


def _body(**overrides: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "apiVersion": "marketplace.p2p.dev/v1alpha1",
        "kind": "MarketplaceNode",
        "metadata": {
            "name": "n1",
            "namespace": "ns",
            "uid": "u1",
            "resourceVersion": "42",
            "generation": 3,
            "labels": {"team": "a"},
            "annotations": {
                "keep.me/x": "1",
                f"{PREFIX}/last-handled-configuration": '{"spec": {}}',
                f"{PREFIX}/kopf-managed": "yes",
                "kubectl.kubernetes.io/last-applied-configuration": "{}",
                "marketplace.p2p.dev/restartedAt": "2026-11-25T00:00:00Z",
            },
            "finalizers": [f"{PREFIX}/finalizer"],
            "managedFields": [{"manager": "kubectl", "fieldsV1": {"f:spec": {"f:fleet": {}}}}],
        },
        "spec": {"fleet": "blue", "p2p": {"port": 7070, "maxPeers": 50}},
        "status": {"phase": "Ready", "conditions": [{"type": "Ready", "status": "True"}]},
    }
    body.update(overrides)
    return body


BODIES = [
    _body(),
    _body(spec={}),
    _body(metadata={"name": "bare"}),  # no labels, no annotations
    {k: v for k, v in _body().items() if k != "status"},
    {**_body(), "data": {"a": "b"}},  # top-level fields beyond spec are part of it too
]


@pytest.mark.parametrize("body", BODIES)
@pytest.mark.parametrize("extra", [(), ("status.phase",), ("metadata.generation",)])
def test_same_essence_as_kopf(body: dict[str, Any], extra: tuple[str, ...]) -> None:
    ours = LeanAnnotationsDiffBaseStorage(prefix=PREFIX, key="last-handled-configuration")
    theirs = kopf.AnnotationsDiffBaseStorage(prefix=PREFIX, key="last-handled-configuration")
    # kopf detects the marked prefixes of other kopf operators from the annotations.
    original = copy.deepcopy(body)
    raw = cast("kopf.RawBody", body)
    lean = ours.build(body=kopf.Body(raw), extra_fields=extra)
    full = theirs.build(body=kopf.Body(raw), extra_fields=extra)
    assert lean == full
    assert body == original  # neither storage changed what it was given


def test_slim_keeps_only_what_the_essence_reads() -> None:
    out = slim(_body())
    assert set(out) == {"apiVersion", "kind", "metadata", "spec"}
    assert set(out["metadata"]) == {"labels", "annotations"}


@pytest.mark.parametrize("body", BODIES)
def test_progress_marks_are_cleared_as_kopf_clears_them_without_touching_the_essence(
    body: dict[str, Any],
) -> None:
    essence = kopf.AnnotationsDiffBaseStorage(prefix="other.example").build(
        body=kopf.Body(cast("kopf.RawBody", body))
    )  # keeps this prefix's marks, so there are some to clear
    given = copy.deepcopy(essence)
    ours = LeanAnnotationsProgressStorage(prefix=PREFIX).clear(essence=essence)
    theirs = kopf.AnnotationsProgressStorage(prefix=PREFIX).clear(essence=given)
    assert ours == theirs
    assert essence == given  # what it was handed is left as it was


POD = {
    "apiVersion": "v1",
    "kind": "Pod",
    "metadata": {"name": "p", "labels": {"a": "b"}},
    "spec": {"containers": [{"name": "node", "image": "node:1"}]},
}


def test_kinds_no_change_handler_or_daemon_selects_get_no_essence() -> None:
    storage = LeanAnnotationsDiffBaseStorage(
        prefix=PREFIX, key="last-handled-configuration", groups={"marketplace.p2p.dev"}
    )
    assert storage.build(body=kopf.Body(cast("kopf.RawBody", POD))) == {}
    node = storage.build(body=kopf.Body(cast("kopf.RawBody", _body())))
    assert node["spec"] == _body()["spec"]
    # by default (or when a selector names no group) every kind gets one
    anything = LeanAnnotationsDiffBaseStorage(prefix=PREFIX, key="last-handled-configuration")
    assert anything.build(body=kopf.Body(cast("kopf.RawBody", POD))) != {}


def test_the_operators_change_handlers_and_daemons_select_only_its_own_group() -> None:
    assert essential_groups(kopf.get_default_registry()) == {"marketplace.p2p.dev"}
    registry = kopf.OperatorRegistry()

    @kopf.on.update("pods", registry=registry)
    async def on_pod(**_: Any) -> None: ...

    assert essential_groups(registry) == {ANY_GROUP}


def test_unstored_each_body_is_its_own_diff_base_and_nothing_is_patched() -> None:
    storage = LeanAnnotationsDiffBaseStorage(
        prefix=PREFIX, key="last-handled-configuration", stored=False
    )
    body = kopf.Body(cast("kopf.RawBody", _body()))  # its annotation says spec {}: stale
    assert storage.fetch(body=body) == storage.build(body=body)
    patch = kopf.Patch()
    storage.store(body=body, patch=patch, essence=storage.build(body=body))
    assert not patch
    stored = LeanAnnotationsDiffBaseStorage(prefix=PREFIX, key="last-handled-configuration")
    assert stored.fetch(body=body) == {"spec": {}}  # kopf's way: the annotation
    stored.store(body=body, patch=patch, essence=stored.build(body=body))
    assert patch  # the annotation, written


def test_only_a_deletion_handler_reads_no_diff() -> None:
    assert not diff_read(kopf.get_default_registry())  # the operator's: on.delete, daemons

    def registry_with(decorator: Any) -> kopf.OperatorRegistry:
        registry = kopf.OperatorRegistry()

        @kopf.on.delete("pods", registry=registry)
        async def gone(**_: Any) -> None: ...

        decorator(registry)(gone)
        return registry

    assert not diff_read(registry_with(lambda r: kopf.daemon("pods", registry=r)))
    for reads in (
        lambda r: kopf.on.update("pods", registry=r),
        lambda r: kopf.on.create("pods", registry=r),
        lambda r: kopf.on.resume("pods", registry=r),
        lambda r: kopf.on.field("pods", field="spec.x", registry=r),
        lambda r: kopf.on.delete("pods", field="spec.x", registry=r),
        lambda r: kopf.timer("pods", interval=1, idle=5, registry=r),
    ):
        assert diff_read(registry_with(reads))
