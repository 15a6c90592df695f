"""TLS decisions (which path, what a pod mounts, when to issue again) and the plan's TLS
actions, table-tested; the operator's CA issuing what a TLS client verifies."""

from __future__ import annotations

import ssl
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from marketplace_operator import certs, nodeloop
from marketplace_operator.model.tls import CertificateSource, IssuerKind, IssuerRef, TlsSpec
from marketplace_operator.reconcile import fleet, node, tls
from marketplace_operator.reconcile.observe import pod_view
from marketplace_operator.render import names, pod
from marketplace_operator.render import tls as render_tls

from tests.unit.marketplace_operator.reconcile.test_node import (
    IMAGE,
    REF,
    desired,
    existing,
    pod_status,
)

NOW = datetime(2026, 1, 1, tzinfo=UTC)
AUTO, CM, OPERATOR = (
    CertificateSource.AUTO,
    CertificateSource.CERT_MANAGER,
    CertificateSource.OPERATOR,
)


@pytest.mark.parametrize(
    ("enabled", "source", "installed", "want"),
    [
        (False, AUTO, False, None),
        (False, AUTO, True, None),
        (False, CM, False, None),  # off: nothing is asked of cert-manager
        (False, OPERATOR, True, None),
        (True, AUTO, False, tls.Path.OPERATOR),
        (True, AUTO, True, tls.Path.CERT_MANAGER),
        (True, OPERATOR, False, tls.Path.OPERATOR),
        (True, OPERATOR, True, tls.Path.OPERATOR),
        (True, CM, True, tls.Path.CERT_MANAGER),
    ],
)
def test_the_certificate_path(
    enabled: bool, source: CertificateSource, installed: bool, want: tls.Path | None
) -> None:
    spec = TlsSpec(enabled=enabled, source=source)
    assert tls.path(spec, cert_manager=installed) == want


def test_cert_manager_asked_for_but_not_installed_is_refused_and_mounts_nothing() -> None:
    spec = TlsSpec(enabled=True, source=CM)
    with pytest.raises(tls.Unavailable, match="not installed"):
        tls.path(spec, cert_manager=False)
    assert tls.mount_of(REF, spec, cert_manager=False) is None


def test_what_a_pod_mounts_on_each_path() -> None:
    peer = "blue.ns.svc"
    on = TlsSpec(enabled=True)
    assert tls.mount_of(REF, on, cert_manager=False) == names.TlsMount("n1-tls", peer)
    assert tls.mount_of(REF, on, cert_manager=True) == names.TlsMount("blue-fleet-tls", peer)
    assert tls.mount_of(REF, TlsSpec(), cert_manager=True) is None


def test_a_node_certificate_names_the_fleet_first_then_its_service() -> None:
    assert tls.node_names(REF) == [
        "blue.ns.svc",
        "blue.ns.svc.cluster.local",
        "n1",
        "n1.ns",
        "n1.ns.svc",
        "n1.ns.svc.cluster.local",
    ]


START, END = NOW, NOW + timedelta(days=90)


@pytest.mark.parametrize(
    ("now", "due"),
    [
        (START - timedelta(seconds=1), True),  # not yet valid: a clock far off, or a bad file
        (START, False),
        (START + timedelta(days=59, hours=23), False),
        (START + timedelta(days=60), True),  # two thirds of 90 days
        (END - timedelta(seconds=1), True),
        (END, True),
        (END + timedelta(days=1), True),
    ],
)
def test_renewal_is_due_after_two_thirds_of_the_lifetime(now: datetime, due: bool) -> None:
    assert tls.renewal_due(START, END, now) is due


def issued_secret(**overrides: str) -> dict[str, Any]:
    notes = render_tls.certificate_annotations(
        ca_id="ca-1", not_before=START, not_after=END, names_digest=tls.names_digest(["a"])
    )
    return {"metadata": {"name": "n1-tls", "annotations": {**notes, **overrides}}}


@pytest.mark.parametrize(
    ("secret", "names_", "now", "want"),
    [
        (None, ["a"], NOW, tls.Reissue.MISSING),
        (issued_secret(), ["a"], NOW, None),
        (issued_secret(), ["a"], NOW + timedelta(days=61), tls.Reissue.RENEWAL_DUE),
        (issued_secret(), ["a", "b"], NOW, tls.Reissue.NAMES_CHANGED),
        (issued_secret(**{names.TLS_CA_ANNOTATION: "ca-0"}), ["a"], NOW, tls.Reissue.CA_CHANGED),
        ({"metadata": {"name": "n1-tls"}}, ["a"], NOW, tls.Reissue.UNREADABLE),
        (
            issued_secret(**{names.TLS_NOT_AFTER_ANNOTATION: "soon"}),
            ["a"],
            NOW,
            tls.Reissue.UNREADABLE,
        ),
    ],
)
def test_when_a_node_certificate_is_issued_again(
    secret: dict[str, Any] | None, names_: list[str], now: datetime, want: tls.Reissue | None
) -> None:
    assert tls.reissue(secret, ca="ca-1", dns_names=names_, now=now) == want


def with_tls(chosen: tls.Path, issuer: IssuerRef | None = None) -> node.Desired:
    d = desired()
    mount = tls.mount(REF, chosen)
    inputs = pod.PodInputs(IMAGE, d.spec, tls=mount)
    return replace(d, pod_inputs=inputs, tls=node.TlsPlan(chosen, issuer))


def tls_actions(d: node.Desired, observed: node.Observed) -> list[node.Action]:
    kinds = (node.CreateFleetCa, node.IssueCertificate)
    tls_kinds = {node.Kind.ISSUER, node.Kind.CERTIFICATE, node.Kind.TLS_CA}
    return [
        a
        for a in node.plan(d, observed, now=NOW)
        if isinstance(a, kinds) or (isinstance(a, node.Create | node.Patch) and a.kind in tls_kinds)
    ]


CA_SECRET = {
    "metadata": {
        "name": "blue-tls-ca",
        "annotations": {names.TLS_CA_ANNOTATION: "ca-1"},
        "ownerReferences": [names.fleet_owner_reference("blue", "fleet-uid")],
    }
}


def test_the_operator_path_makes_the_ca_then_issues_then_rests() -> None:
    d = with_tls(tls.Path.OPERATOR)
    assert tls_actions(d, existing(d)) == [node.CreateFleetCa()]
    first = tls_actions(d, replace(existing(d), tls_ca=CA_SECRET))
    assert first == [node.IssueCertificate(tls.Reissue.MISSING, tuple(tls.node_names(REF)))]
    notes = render_tls.certificate_annotations(
        ca_id="ca-1",
        not_before=NOW,
        not_after=NOW + tls.NODE_VALIDITY,
        names_digest=tls.names_digest(tls.node_names(REF)),
    )
    issued = {"metadata": {"name": "n1-tls", "annotations": notes}}
    assert tls_actions(d, replace(existing(d), tls_ca=CA_SECRET, tls_secret=issued)) == []


def test_the_cert_manager_path_asks_for_one_certificate_until_its_secret_is_written() -> None:
    d = with_tls(tls.Path.CERT_MANAGER)
    actions = tls_actions(d, replace(existing(d), tls_ca=CA_SECRET))
    assert [(type(a).__name__, getattr(a, "kind", None)) for a in actions] == [
        ("Create", node.Kind.ISSUER),
        ("Create", node.Kind.CERTIFICATE),
    ]
    written = {"metadata": {"name": "blue-fleet-tls"}}
    assert tls_actions(d, replace(existing(d), tls_ca=CA_SECRET, tls_secret=written)) == []


def test_a_named_issuer_needs_no_ca_of_ours() -> None:
    issuer = IssuerRef(name="corp", kind=IssuerKind.CLUSTER_ISSUER)
    d = with_tls(tls.Path.CERT_MANAGER, issuer)
    actions = tls_actions(d, existing(d))
    assert len(actions) == 1
    create = actions[0]
    assert isinstance(create, node.Create)
    assert create.kind is node.Kind.CERTIFICATE
    assert create.body["spec"]["issuerRef"] == {
        "name": "corp",
        "kind": "ClusterIssuer",
        "group": "cert-manager.io",
    }
    assert create.body["spec"]["dnsNames"] == ["blue.ns.svc", "blue.ns.svc.cluster.local"]
    assert create.body["spec"]["secretName"] == "blue-fleet-tls"


def test_tls_changes_the_pod_and_its_hash_only_when_on() -> None:
    plain = desired()
    on = with_tls(tls.Path.OPERATOR)
    assert pod.template_hash(plain.pod_inputs) != pod.template_hash(on.pod_inputs)
    assert pod.template_hash(plain.pod_inputs) == pod.template_hash(
        pod.PodInputs(IMAGE, plain.spec)
    )
    body = pod.pod(REF, on.pod_inputs)
    env = {e["name"]: e.get("value") for e in body["spec"]["containers"][0]["env"]}
    assert env["MARKETPLACE_NODE_TLS_CERT_FILE"] == f"{names.TLS_DIR}/tls.crt"
    assert env["MARKETPLACE_NODE_TLS_PEER_NAME"] == "blue.ns.svc"
    volumes = {v["name"]: v for v in body["spec"]["volumes"]}
    assert volumes["tls"]["secret"]["secretName"] == "n1-tls"
    assert body["metadata"]["annotations"][names.TLS_SCHEME_ANNOTATION] == "https"
    assert "tls" not in {v["name"] for v in pod.pod(REF, plain.pod_inputs)["spec"]["volumes"]}


def test_a_certificate_from_the_fleet_ca_verifies_for_the_fleet_name(tmp_path: Path) -> None:
    ca = certs.new_ca("fleet", now=NOW, valid=tls.CA_VALIDITY)
    leaf = certs.issue(ca, dns_names=tls.node_names(REF), now=NOW, valid=tls.NODE_VALIDITY)
    seen = certs.info(leaf.cert_pem)
    assert seen.authority_key_id == certs.key_id(ca.cert_pem)
    assert seen.dns_names == tuple(tls.node_names(REF))
    assert seen.not_after - seen.not_before == tls.NODE_VALIDITY + certs.BACKDATE
    short = certs.issue(ca, dns_names=["x"], now=NOW, valid=timedelta(days=99_999))
    assert certs.info(short.cert_pem).not_after == certs.info(ca.cert_pem).not_after
    (tmp_path / "ca.crt").write_bytes(ca.cert_pem)
    (tmp_path / "tls.crt").write_bytes(leaf.cert_pem)
    (tmp_path / "tls.key").write_bytes(leaf.key_pem)
    server = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server.load_cert_chain(tmp_path / "tls.crt", tmp_path / "tls.key")  # a matching pair
    with pytest.raises(ValueError, match="at least one"):
        certs.issue(ca, dns_names=[], now=NOW, valid=tls.NODE_VALIDITY)


def test_members_serving_tls_are_announced_with_https() -> None:
    view = pod_view({"metadata": {"name": "n1", "uid": "u"}, "status": pod_status()})
    plain = fleet.MemberPod("n1", view, 7070)
    secure = fleet.MemberPod("n2", view, 7070, scheme="https")
    addresses = [m.address for m in fleet.members([plain, secure], {})]
    assert addresses == ["http://127.1.0.5:7070", "https://127.1.0.5:7070"]


def test_the_node_loop_reports_a_path_the_cluster_cannot_serve() -> None:
    wanted = TlsSpec(enabled=True, source=CM)
    views = nodeloop.Views(fleet_tls=wanted, cert_manager=False)
    assert "not installed" in (nodeloop.tls_refusal(views) or "")
    assert nodeloop.tls_plan(views) is None
    served = nodeloop.Views(fleet_tls=wanted, cert_manager=True)
    assert nodeloop.tls_refusal(served) is None
    assert nodeloop.tls_plan(served) == node.TlsPlan(tls.Path.CERT_MANAGER, None)
