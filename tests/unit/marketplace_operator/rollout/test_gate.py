"""The fleet's PodDisruptionBudget and the replacement gate the node reconcile consults."""

from __future__ import annotations

import copy
from typing import Any

import pytest
from marketplace_operator.reconcile.fleet import MemberPod
from marketplace_operator.reconcile.observe import PodView
from marketplace_operator.render import names, pdb
from marketplace_operator.rollout import gate


def test_pdb_selects_the_fleets_node_pods_with_its_budget() -> None:
    body = pdb.pdb("blue", namespace="ns", budget=pdb.Budget(5, 2), owner_uid="u")
    assert body["metadata"]["name"] == "blue-nodes"
    assert body["spec"]["minAvailable"] == 3
    assert "maxUnavailable" not in body["spec"]  # needs /scale, which MarketplaceNode lacks
    selector = body["spec"]["selector"]["matchLabels"]
    pod_labels = names.node_labels(names.NodeRef("n", "ns", "x", "blue"))
    assert selector.items() <= pod_labels.items()
    other = names.node_labels(names.NodeRef("n", "ns", "x", "green"))
    assert not selector.items() <= other.items()
    assert body["metadata"]["ownerReferences"][0]["uid"] == "u"
    assert body["spec"]["unhealthyPodEvictionPolicy"] == "AlwaysAllow"
    assert (
        "ownerReferences" not in pdb.pdb("b", namespace="ns", budget=pdb.Budget(1, 1))["metadata"]
    )


@pytest.mark.parametrize(
    ("members", "budget", "min_available"),
    [
        (0, 1, 0),
        (1, 1, 0),
        (3, 1, 2),
        (10, 1, 9),
        (10, 3, 7),
        (5, 0, 5),  # maxUnavailable 0: no voluntary eviction at all
        (2, 2, 0),  # budget = members
        (2, 5, 0),  # budget > members: never negative
    ],
)
def test_min_available_is_members_minus_budget(
    members: int, budget: int, min_available: int
) -> None:
    body = pdb.pdb("blue", namespace="ns", budget=pdb.Budget(members, budget))
    assert body["spec"]["minAvailable"] == min_available
    assert isinstance(body["spec"]["minAvailable"], int)  # a percentage would need /scale too


def test_members_are_the_nodes_not_being_deleted() -> None:
    def mnode(name: str, *, deleting: bool = False) -> dict[str, Any]:
        meta: dict[str, Any] = {"name": name}
        if deleting:
            meta["deletionTimestamp"] = "2026-01-01T00:00:00Z"
        return {"metadata": meta, "spec": {}}

    assert pdb.members([]) == 0
    assert pdb.members([mnode("a"), mnode("b"), mnode("c", deleting=True)]) == 2
    assert pdb.members([mnode("a", deleting=True)]) == 0


def test_budget_equality_tracks_members_and_max_unavailable() -> None:
    """The loop re-ensures the PDB when either changes: Budget equality is its trigger."""
    assert pdb.Budget(3, 1) == pdb.Budget(3, 1)
    assert pdb.Budget(3, 1) != pdb.Budget(4, 1)
    assert pdb.Budget(3, 1) != pdb.Budget(3, 2)


def test_pdb_drift() -> None:
    wanted = pdb.pdb("blue", namespace="ns", budget=pdb.Budget(3, 1))
    assert not pdb.drifted(wanted, wanted)
    assert pdb.drifted(pdb.pdb("blue", namespace="ns", budget=pdb.Budget(3, 2)), wanted)
    assert pdb.drifted(pdb.pdb("blue", namespace="ns", budget=pdb.Budget(4, 1)), wanted)
    # Server-side defaults and status outside what we manage are no drift.
    observed = copy.deepcopy(wanted)
    observed["status"] = {"disruptionsAllowed": 1, "expectedPods": 3}
    observed["metadata"]["resourceVersion"] = "42"
    assert not pdb.drifted(observed, wanted)


def _legacy(max_unavailable: int) -> dict[str, Any]:
    """A PDB as operators before minAvailable wrote it."""
    body = pdb.pdb("blue", namespace="ns", budget=pdb.Budget(3, max_unavailable))
    spec = body["spec"]
    del spec["minAvailable"]
    spec["maxUnavailable"] = max_unavailable
    return body


def _merge(target: Any, patch: Any) -> Any:
    """RFC 7386 JSON merge patch, as the API server applies it."""
    if not isinstance(patch, dict):
        return patch
    out = dict(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if value is None:
            out.pop(key, None)
        else:
            out[key] = _merge(out.get(key), value)
    return out


def test_a_legacy_max_unavailable_pdb_drifts_and_the_patch_removes_it() -> None:
    wanted = pdb.pdb("blue", namespace="ns", budget=pdb.Budget(3, 1))
    legacy = _legacy(1)
    assert pdb.drifted(legacy, wanted)
    # Even with minAvailable already right, a leftover maxUnavailable is drift.
    both = copy.deepcopy(legacy)
    both["spec"]["minAvailable"] = 2
    assert pdb.drifted(both, wanted)

    for observed in (legacy, both, wanted):
        patched = _merge(observed, pdb.spec_patch(wanted))
        assert "maxUnavailable" not in patched["spec"]
        assert patched["spec"] == wanted["spec"]
        assert not pdb.drifted(patched, wanted)


def _member(node: str, *, ready: bool) -> MemberPod:
    view = PodView(
        name=node,
        uid=f"u-{node}",
        phase="Running",
        ip="127.1.0.1",
        template_hash="old",
        deleting=False,
        ready=ready,
        containers_ready=ready,
        joined=ready,
        restarts=0,
        waiting_reason=None,
        waiting_message=None,
        controller_uid=None,
    )
    return MemberPod(node, view, 7070)


def test_gate_leaves_every_replacement_to_the_rollout() -> None:
    fleet = [_member("a", ready=True), _member("b", ready=False)]
    assert not gate.may_replace(fleet, "a")
    assert not gate.may_replace(fleet, "b")
