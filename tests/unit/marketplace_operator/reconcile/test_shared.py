"""The fleet's shared objects: owned by the MarketplaceFleet, gone with the last node."""

from __future__ import annotations

from typing import Any

from marketplace_operator.reconcile import shared
from marketplace_operator.reconcile.node import Kind
from marketplace_operator.render import configmap, names, secrets

REF = names.NodeRef(name="n1", namespace="ns", uid="uid-1", fleet="blue")
FLEET = names.fleet_owner_reference("blue", "fleet-uid")


def member(i: int) -> names.NodeRef:
    return names.NodeRef(name=f"m{i:04d}", namespace="ns", uid=f"uid-m{i}", fleet="blue")


def with_owners(*owners: dict[str, Any], version: str | None = "41") -> dict[str, Any]:
    meta: dict[str, Any] = {"name": "blue-admin", "ownerReferences": list(owners)}
    if version is not None:
        meta["resourceVersion"] = version
    return {"metadata": meta}


def test_an_object_owned_by_every_member_is_handed_to_the_fleet_in_one_patch() -> None:
    """The upgrade: an older operator left one reference per member (939 at 1,000 nodes)."""
    legacy = with_owners(*(names.owner_reference(member(i)) for i in range(939)))
    patch = shared.owner_patch(legacy, "blue", "fleet-uid")
    assert patch == {"metadata": {"ownerReferences": [FLEET], "resourceVersion": "41"}}
    adopted = with_owners(*patch["metadata"]["ownerReferences"])
    assert shared.owner_patch(adopted, "blue", "fleet-uid") is None  # then it rests


def test_someone_elses_owner_reference_is_kept() -> None:
    theirs = names.owner_reference_to("apps/v1", "Deployment", "x", "uid-x")
    patch = shared.owner_patch(with_owners(theirs, names.owner_reference(REF)), "blue", "fleet-uid")
    assert patch is not None
    assert patch["metadata"]["ownerReferences"] == [theirs, FLEET]
    assert shared.owner_patch(with_owners(theirs, FLEET), "blue", "fleet-uid") is None


def test_an_unowned_object_or_one_of_an_earlier_fleet_object_is_adopted() -> None:
    """Made before the operator made the MarketplaceFleet, or owned by a deleted one of the
    same name (a fleet recreated: a new uid)."""
    for obj in (
        with_owners(version=None),
        {"metadata": {"name": "blue-admin"}},
        with_owners(names.fleet_owner_reference("blue", "old-uid"), version=None),
    ):
        assert shared.owner_patch(obj, "blue", "fleet-uid") == {
            "metadata": {"ownerReferences": [FLEET]}
        }


def test_objects_the_operator_makes_need_no_patch() -> None:
    made = (
        secrets.admin_secret(REF, token="t", fleet_uid="fleet-uid"),
        configmap.policy_configmap(REF, members="{}", fleet_uid="fleet-uid"),
    )
    for obj in made:
        assert shared.owner_patch(obj, "blue", "fleet-uid") is None


def test_the_last_member_is_the_one_with_no_live_other() -> None:
    assert shared.last_member((), REF.uid)
    assert shared.last_member((REF,), REF.uid)  # the index may not show its deletion yet
    assert not shared.last_member((REF, member(1)), REF.uid)
    assert not shared.last_member((member(1),), REF.uid)


def test_the_shared_objects_are_the_fleets_by_name() -> None:
    core = (
        (Kind.POLICY_CONFIGMAP, "blue-policy"),
        (Kind.FLEET_ADMIN, "blue-admin"),
        (Kind.TLS_CA, names.tls_ca_secret_name("blue")),
    )
    assert shared.objects("blue", cert_manager=False) == core
    assert shared.objects("blue", cert_manager=True) == (
        *core,
        (Kind.CERTIFICATE, names.fleet_tls_secret_name("blue")),
        (Kind.ISSUER, names.ca_issuer_name("blue")),
    )
