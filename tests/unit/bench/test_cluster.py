"""The benchmarks' clean-up: which finalizers are stripped, what is deleted, what is tolerated."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import kopf
import pytest
from marketplace_operator import errors, k8s
from marketplace_operator.handlers import mnode
from marketplace_operator.settings import Settings

sys.path.insert(0, str(Path(__file__).resolve().parents[3]))  # `bench` is not an installed package

from bench import cluster

THEIRS = "example.com/keep"


def _obj(name: str, finalizers: list[str] | None) -> dict[str, Any]:
    metadata: dict[str, Any] = {"name": name}
    if finalizers is not None:
        metadata["finalizers"] = finalizers
    return {"metadata": metadata}


@pytest.mark.parametrize(
    ("finalizers", "expected"),
    [
        (None, None),
        ([], None),
        ([THEIRS], None),
        ([cluster.FINALIZER], []),
        ([THEIRS, cluster.FINALIZER], [THEIRS]),
        ([cluster.FINALIZER, THEIRS, cluster.FINALIZER], [THEIRS]),
    ],
)
def test_without_ours_drops_only_our_finalizer(
    finalizers: list[str] | None, expected: list[str] | None
) -> None:
    assert cluster.without_ours(_obj("x", finalizers)) == expected


def test_our_finalizer_is_the_one_the_operator_configures() -> None:
    settings = kopf.OperatorSettings()
    mnode.configure(settings, Settings())
    assert settings.persistence.finalizer == cluster.FINALIZER


class FakeKube:
    """The blocking API wrapper, in memory: objects per resource plural, calls recorded."""

    def __init__(self, objects: dict[str, list[dict[str, Any]]], missing: set[str]) -> None:
        self.objects, self.missing = objects, missing
        self.patches: list[tuple[str, str, dict[str, Any]]] = []
        self.deleted: list[str] = []
        self.namespace_gone = False

    def list(self, res: k8s.Resource, namespace: str) -> list[dict[str, Any]]:
        if res.plural in self.missing:  # a CRD not installed
            raise errors.NotFound(f"{res.plural}")
        return self.objects.get(res.plural, [])

    def patch(
        self, res: k8s.Resource, namespace: str, name: str, patch: dict[str, Any]
    ) -> dict[str, Any]:
        if name == "vanished":
            raise errors.NotFound(name)
        self.patches.append((res.plural, name, patch))
        return {}

    def request(self, method: str, path: str) -> dict[str, Any]:
        if self.namespace_gone:
            raise errors.NotFound(path)
        self.deleted.append(f"{method} {path}")
        return {}


def test_release_strips_our_finalizer_from_every_kind_then_deletes_the_namespace() -> None:
    kube = FakeKube(
        {
            "marketplacenodes": [
                _obj("a", [cluster.FINALIZER]),
                _obj("b", None),
                _obj("vanished", [cluster.FINALIZER]),
            ],
            "marketplacefleets": [_obj("f", [THEIRS, cluster.FINALIZER])],
            "banlists": [_obj("ban", [cluster.FINALIZER])],
        },
        missing={"ratelimitpolicies"},
    )
    cluster.release_namespace(kube, "ns")  # type: ignore[arg-type]
    assert kube.patches == [
        ("marketplacenodes", "a", {"metadata": {"finalizers": None}}),
        ("marketplacefleets", "f", {"metadata": {"finalizers": [THEIRS]}}),
        ("banlists", "ban", {"metadata": {"finalizers": None}}),
    ]
    assert kube.deleted == ["DELETE /api/v1/namespaces/ns"]


def test_release_tolerates_a_namespace_already_gone_but_not_other_errors() -> None:
    kube = FakeKube({}, missing=set())
    kube.namespace_gone = True
    cluster.release_namespace(kube, "ns")  # type: ignore[arg-type]

    class Down(FakeKube):
        def list(self, res: k8s.Resource, namespace: str) -> list[dict[str, Any]]:
            raise errors.Unavailable("API server down")

    with pytest.raises(errors.Unavailable):
        cluster.release_namespace(Down({}, set()), "ns")  # type: ignore[arg-type]


def test_wait_returns_once_the_probe_holds_and_raises_after_the_deadline() -> None:
    answers = iter([False, False, True])
    took = cluster.wait("third time", lambda: next(answers), deadline=5.0, interval=0.01)
    assert 0.02 <= took < 5.0  # two sleeps before the third answer
    with pytest.raises(TimeoutError, match=r"^never not reached within 0\.05s$"):
        cluster.wait("never", lambda: False, deadline=0.05, interval=0.01)


def test_a_probe_the_api_server_did_not_answer_is_not_yet() -> None:
    """Issue 15: one LIST timing out on a loaded machine ended a whole bench-scale run."""
    calls = iter([1, 2])

    def probe() -> bool:
        if next(calls) == 1:
            raise errors.Unavailable("GET /x: ")
        return True

    assert cluster.wait("after a timeout", probe, deadline=5.0, interval=0.01) < 5.0

    def gone() -> bool:
        raise errors.NotFound("x")

    with pytest.raises(errors.NotFound):  # anything else still ends the wait
        cluster.wait("gone", gone, deadline=1.0, interval=0.01)
