"""`spec.scheduling` and `spec.template` in the pod: the default spread, the fleet as the
default selector, typed overrides that never replace the operator's own fields, and a
template hash that moves only when a user sets something."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest
from marketplace_operator.model.mnode import MarketplaceNodeSpec, MarketplaceNodeStatus, Phase
from marketplace_operator.model.scheduling import OPERATOR_ENV, SchedulingSpec
from marketplace_operator.reconcile import status
from marketplace_operator.reconcile.observe import pod_view
from marketplace_operator.render import names, pod
from pydantic import ValidationError

REF = names.NodeRef(name="n1", namespace="ns", uid="uid-1", fleet="blue")
IMAGE = "ghcr.io/marketplace-fleet/node:0.1.0"
FLEET = {"app.kubernetes.io/name": "marketplace-node", "marketplace.p2p.dev/fleet": "blue"}
# What the API server's structural defaulting makes of a spec that sets neither field.
API_DEFAULTED: dict[str, Any] = {
    "scheduling": {"affinity": {"nodeAffinity": {}, "podAffinity": {}, "podAntiAffinity": {}}},
    "template": {"container": {}, "pod": {"metadata": {}}},
}


def spec(**fields: Any) -> MarketplaceNodeSpec:
    return MarketplaceNodeSpec.model_validate({"fleet": "blue", **fields})


def rendered(**fields: Any) -> dict[str, Any]:
    return pod.pod(REF, pod.PodInputs(IMAGE, spec(**fields)))


def test_by_default_a_fleet_spreads_softly_over_nodes_and_zones() -> None:
    constraints = rendered()["spec"]["topologySpreadConstraints"]
    assert [(c["topologyKey"], c["maxSkew"], c["whenUnsatisfiable"]) for c in constraints] == [
        ("kubernetes.io/hostname", 1, "ScheduleAnyway"),
        ("topology.kubernetes.io/zone", 1, "ScheduleAnyway"),
    ]
    assert all(c["labelSelector"] == {"matchLabels": FLEET} for c in constraints)
    assert "affinity" not in rendered(**API_DEFAULTED)["spec"]


def test_an_empty_spread_list_means_no_spreading() -> None:
    assert (
        "topologySpreadConstraints"
        not in rendered(scheduling={"topologySpreadConstraints": []})["spec"]
    )


def test_user_fields_reach_the_pod_and_a_selectorless_term_selects_the_fleet() -> None:
    p = rendered(
        scheduling={
            "affinity": {
                "podAntiAffinity": {
                    "requiredDuringSchedulingIgnoredDuringExecution": [
                        {"topologyKey": "kubernetes.io/hostname", "labelSelector": {}}
                    ]
                }
            },
            "topologySpreadConstraints": [
                {"maxSkew": 2, "topologyKey": "topology.kubernetes.io/zone",
                 "whenUnsatisfiable": "DoNotSchedule",
                 "labelSelector": {"matchLabels": {"tier": "edge"}}}
            ],
            "tolerations": [{"key": "dedicated", "operator": "Equal", "value": "p2p",
                             "effect": "NoSchedule"}],
            "nodeSelector": {"disk": "ssd"},
            "priorityClassName": "marketplace-critical",
        }
    )["spec"]  # fmt: skip
    (term,) = p["affinity"]["podAntiAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"]
    assert term == {
        "topologyKey": "kubernetes.io/hostname",
        "labelSelector": {"matchLabels": FLEET},
    }
    (spread,) = p["topologySpreadConstraints"]
    assert spread["labelSelector"] == {"matchLabels": {"tier": "edge"}}  # the user's own
    assert spread["whenUnsatisfiable"] == "DoNotSchedule"
    assert p["tolerations"] == [
        {"key": "dedicated", "operator": "Equal", "value": "p2p", "effect": "NoSchedule"}
    ]
    assert p["nodeSelector"] == {"disk": "ssd"}
    assert p["priorityClassName"] == "marketplace-critical"


def test_template_overrides_add_to_the_pod_and_never_replace_the_operators_fields() -> None:
    p = rendered(
        template={
            "pod": {
                "metadata": {
                    "labels": {"team": "p2p", "marketplace.p2p.dev/fleet": "other"},
                    "annotations": {"example.com/owner": "ops"},
                },
                "hostAliases": [{"ip": "10.0.0.9", "hostnames": ["mirror.internal"]}],
                "runtimeClassName": "gvisor",
            },
            "container": {"env": [{"name": "MARKETPLACE_NODE_LOG_LEVEL", "value": "DEBUG"}]},
        }
    )
    labels = p["metadata"]["labels"]
    assert labels["team"] == "p2p"
    assert labels["marketplace.p2p.dev/fleet"] == "blue"  # the operator's key wins
    assert p["metadata"]["annotations"]["example.com/owner"] == "ops"
    assert names.TEMPLATE_HASH_ANNOTATION in p["metadata"]["annotations"]
    assert p["spec"]["hostAliases"] == [{"ip": "10.0.0.9", "hostnames": ["mirror.internal"]}]
    assert p["spec"]["runtimeClassName"] == "gvisor"
    env = p["spec"]["containers"][0]["env"]
    assert env[-1] == {"name": "MARKETPLACE_NODE_LOG_LEVEL", "value": "DEBUG"}


def test_every_variable_the_operator_sets_is_reserved_from_the_template() -> None:
    full = spec(p2p={"bootstrapPeers": ["http://127.0.0.9:7070"]})
    env = pod.pod(REF, pod.PodInputs(IMAGE, full))["spec"]["containers"][0]["env"]
    assert {e["name"] for e in env} <= set(OPERATOR_ENV)


def test_the_hash_moves_only_when_a_user_sets_scheduling_or_template() -> None:
    plain = pod.template_hash(pod.PodInputs(IMAGE, spec()))
    assert pod.template_hash(pod.PodInputs(IMAGE, spec(**API_DEFAULTED))) == plain
    assert "scheduling" not in pod.PodInputs(IMAGE, spec()).hash_material()
    for changed in (
        spec(scheduling={"nodeSelector": {"disk": "ssd"}}),
        spec(scheduling={"topologySpreadConstraints": []}),
        spec(template={"pod": {"metadata": {"labels": {"a": "b"}}}}),
    ):
        assert pod.template_hash(pod.PodInputs(IMAGE, changed)) != plain


@pytest.mark.parametrize(
    "bad",
    [
        {"topologySpreadConstraints": [
            {"maxSkew": 0, "topologyKey": "k", "whenUnsatisfiable": "DoNotSchedule"}]},
        {"topologySpreadConstraints": [
            {"maxSkew": 1, "topologyKey": "k", "whenUnsatisfiable": "Maybe"}]},
        {"tolerations": [{"operator": "Sometimes"}]},
        {"nodeSelector": {"disk": "not a label value!"}},
        {"priorityClassName": "Not_A_Name"},
        {"affinity": {"nodeAffinity": {"preferredDuringSchedulingIgnoredDuringExecution": [
            {"weight": 101, "preference": {}}]}}},
        {"unknownField": 1},
    ],
)  # fmt: skip
def test_the_operator_refuses_what_the_schema_refuses(bad: dict[str, Any]) -> None:
    with pytest.raises(ValidationError):
        SchedulingSpec.model_validate(bad)


def test_an_unschedulable_pod_is_a_degraded_node_with_the_schedulers_words() -> None:
    message = "0/3 nodes are available: 3 node(s) didn't match pod anti-affinity rules."
    view = pod_view(
        {
            "metadata": {"name": "n1", "uid": "u"},
            "status": {
                "phase": "Pending",
                "conditions": [
                    {"type": "PodScheduled", "status": "False", "reason": "Unschedulable",
                     "message": message}
                ],
            },
        }
    )  # fmt: skip
    out = status.build_status(
        MarketplaceNodeStatus(), status.StatusInputs(1, view, "h"), now=datetime.now(UTC)
    )
    assert out.phase is Phase.DEGRADED
    degraded = next(c for c in out.conditions if c.type == "Degraded")
    assert (degraded.status, degraded.reason) == ("True", "Unschedulable")
    assert message in degraded.message
