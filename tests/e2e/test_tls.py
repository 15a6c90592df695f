"""TLS on the public listener, end to end (issue 14, item 6).

- The operator's CA: a fleet with `spec.tls` on gets a CA and a certificate per node;
  the nodes peer over HTTPS, verifying each other by the fleet's name; a client fetches
  over HTTPS with the fleet's CA; a certificate written into a node's Secret is served
  by the running pod (no restart).
- cert-manager: with cert-manager's real CRDs installed (hack/cert-manager-crds.sh), the
  operator asks for one Certificate per fleet (and a CA Issuer on the fleet's CA); a
  Secret written as cert-manager writes it is what the node serves.
"""

from __future__ import annotations

import base64
import json
import os
import subprocess
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from e2e_helpers import (
    ROOT,
    Kubectl,
    OperatorProcess,
    Plugin,
    custom_body,
    mnode_body,
    node_cli,
    wait_for,
    wait_ready,
)
from marketplace_node import tls
from marketplace_operator import certs, k8s
from marketplace_operator.render import names

from tests.support.tls_probe import serial, served_serial

PORT = 7070


def _secret_file(kube: k8s.BlockingKube, namespace: str, secret: str, key: str, out: Path) -> Path:
    found = kube.get(k8s.SECRETS, namespace, secret)
    assert found is not None, f"Secret {secret} missing"
    out.write_bytes(base64.b64decode(found["data"][key]))
    return out


def _pod(kube: k8s.BlockingKube, namespace: str, name: str) -> dict[str, Any]:
    pod = kube.get(k8s.PODS, namespace, name)
    assert pod is not None
    return pod


def test_a_fleet_on_the_operator_ca_peers_over_tls_and_takes_a_new_certificate_live(
    kube: k8s.BlockingKube,
    namespace: str,
    operator: OperatorProcess,
    plugin: Plugin,
    kubectl: Kubectl,
    tmp_path: Path,
) -> None:
    fleet, peer_name = "tls-a", f"tls-a.{namespace}.svc"
    kube.create(
        k8s.FLEETS,
        custom_body(
            "MarketplaceFleet", fleet, namespace, tls={"enabled": True, "source": "Operator"}
        ),
    )
    for node in ("tls-a1", "tls-a2"):
        kube.create(k8s.MNODES, mnode_body(node, namespace, fleet=fleet))
    first, second = wait_ready(kube, namespace, ["tls-a1", "tls-a2"], timeout=120)
    ca_file = _secret_file(kube, namespace, "tls-a1-tls", "ca.crt", tmp_path / "ca.crt")
    client = tls.client_context(ca_file, peer_name)
    ip1, ip2 = first["status"]["podIP"], second["status"]["podIP"]

    # Each node knows the other by an https address: they peered over TLS, verified.
    flags = ["--ca-file", str(ca_file), "--server-name", peer_name]

    def knows_second() -> bool:
        peers = node_cli("peers", "--node", f"https://{ip1}:{PORT}", *flags)
        assert peers.returncode == 0, peers.stderr
        return f"https://{ip2}:{PORT}" in {p["address"] for p in json.loads(peers.stdout)}

    try:
        wait_for(knows_second, timeout=30, what="the first node to list the second by https")
    except BaseException:
        print(kubectl("logs", "-n", namespace, "tls-a1", check=False).stdout[-4000:])
        raise

    # A client publishes to one node and fetches from the other, both over verified HTTPS.
    content = os.urandom(2048)
    (tmp_path / "tool.bin").write_bytes(content)
    published = node_cli(
        "publish", str(tmp_path / "tool.bin"), "--name", "tls-tool", "--version", "1.0",
        "--node", f"https://{ip1}:{PORT}", *flags,
    )  # fmt: skip
    assert published.returncode == 0, published.stderr
    out = tmp_path / "fetched.bin"
    wait_for(
        lambda: node_cli(
            "fetch", "tls-tool@1.0", "-o", str(out), "--node", f"https://{ip2}:{PORT}", *flags
        ).returncode == 0,
        timeout=60,
        what="the package fetched from the second node over HTTPS",
    )  # fmt: skip
    assert out.read_bytes() == content
    # The kubectl plugin finds the CA in the node's Secret and the name in its pod.
    found = plugin("search", "tls-tool", "--node", "tls-a2", "-o", "json")
    assert found.returncode == 0, found.stderr
    assert [r["package"]["name"] for r in json.loads(found.stdout)["results"]] == ["tls-tool"]
    refused = node_cli("status", "--node", f"https://{ip1}:{PORT}")  # without the fleet's CA
    assert refused.returncode == 3, refused.stderr
    assert "certificate is not trusted" in refused.stderr

    # A new certificate in the node's Secret is served by the same pod, not restarted.
    pod_before = _pod(kube, namespace, "tls-a1")
    ca_secret = kube.get(k8s.SECRETS, namespace, names.tls_ca_secret_name(fleet))
    assert ca_secret is not None
    ca = certs.KeyPair(
        base64.b64decode(ca_secret["data"]["tls.crt"]),
        base64.b64decode(ca_secret["data"]["tls.key"]),
    )
    renewed = certs.issue(ca, dns_names=[peer_name], now=datetime.now(UTC), valid=timedelta(days=1))
    data = {"tls.crt": renewed.cert_pem, "tls.key": renewed.key_pem}
    encoded = {k: base64.b64encode(v).decode() for k, v in data.items()}
    kube.patch(k8s.SECRETS, namespace, "tls-a1-tls", {"data": encoded})
    wait_for(
        lambda: served_serial(ip1, PORT, client, peer_name) == serial(renewed.cert_pem),
        timeout=60,
        what="the node to serve the certificate written into its Secret",
    )
    pod_after = _pod(kube, namespace, "tls-a1")
    assert pod_after["metadata"]["uid"] == pod_before["metadata"]["uid"]
    restarts = [c["restartCount"] for c in pod_after["status"]["containerStatuses"]]
    assert restarts == [0]


@pytest.fixture
def cert_manager_crds(kubectl: Kubectl) -> Iterator[Path]:
    """cert-manager's Certificate, Issuer and ClusterIssuer CRDs, removed afterwards."""
    directory = Path(
        subprocess.run(
            [str(ROOT / "hack" / "cert-manager-crds.sh")],
            check=True, capture_output=True, text=True, timeout=600,
        ).stdout.strip()
    )  # fmt: skip
    files = sorted(directory.glob("*.yaml"))
    for f in files:
        kubectl("apply", "--server-side", "--force-conflicts", "-f", str(f))
    for f in files:
        kubectl("wait", "--for=condition=Established", "-f", str(f), "--timeout=60s")
    yield directory
    for f in files:
        kubectl("delete", "--wait=false", "--ignore-not-found", "-f", str(f), check=False)


@pytest.mark.usefixtures("cert_manager_crds")
def test_with_cert_manager_installed_a_fleet_asks_for_one_certificate_and_serves_its_secret(
    kube: k8s.BlockingKube,
    kubectl: Kubectl,
    namespace: str,
    operator: OperatorProcess,
) -> None:
    fleet = "tls-b"
    kube.create(
        k8s.FLEETS, custom_body("MarketplaceFleet", fleet, namespace, tls={"enabled": True})
    )
    kube.create(k8s.MNODES, mnode_body("tls-b1", namespace, fleet=fleet))

    def made(resource: str, name: str) -> dict[str, Any]:
        """The object once the operator has made it (kubectl: cert-manager's kinds)."""
        return json.loads(  # type: ignore[no-any-return]
            wait_for(
                lambda: kubectl(
                    "get", resource, "-n", namespace, name, "-o", "json", check=False
                ).stdout or None,
                timeout=60,
                what=f"the operator to create {resource}/{name}",
            )
        )  # fmt: skip

    certificate = made("certificates.cert-manager.io", "tls-b-fleet-tls")
    spec = certificate["spec"]  # as stored: what cert-manager's schema kept of it
    assert spec["issuerRef"] == {"name": "tls-b-ca", "kind": "Issuer", "group": "cert-manager.io"}
    assert spec["dnsNames"] == [f"tls-b.{namespace}.svc", f"tls-b.{namespace}.svc.cluster.local"]
    assert spec["secretTemplate"]["labels"][names.FLEET_LABEL] == fleet
    # Made in the same pass as the Certificate, possibly just after it.
    issuer = made("issuers.cert-manager.io", "tls-b-ca")
    assert issuer["spec"]["ca"]["secretName"] == names.tls_ca_secret_name(fleet)

    # Do what cert-manager's CA issuer does: sign with the Issuer's Secret and write the
    # Certificate's Secret, its keys, type, labels and annotations as cert-manager sets them.
    ca_secret = kube.get(k8s.SECRETS, namespace, issuer["spec"]["ca"]["secretName"])
    assert ca_secret is not None
    ca = certs.KeyPair(
        base64.b64decode(ca_secret["data"]["tls.crt"]),
        base64.b64decode(ca_secret["data"]["tls.key"]),
    )
    pair = certs.issue(
        ca, dns_names=spec["dnsNames"], now=datetime.now(UTC), valid=timedelta(days=90)
    )
    kube.create(
        k8s.SECRETS,
        {
            "apiVersion": "v1",
            "kind": "Secret",
            "type": "kubernetes.io/tls",
            "metadata": {
                "name": spec["secretName"],
                "namespace": namespace,
                "labels": {
                    **spec["secretTemplate"]["labels"],
                    "controller.cert-manager.io/fao": "true",
                },
                "annotations": {
                    "cert-manager.io/certificate-name": certificate["metadata"]["name"],
                    "cert-manager.io/issuer-name": "tls-b-ca",
                    "cert-manager.io/issuer-kind": "Issuer",
                    "cert-manager.io/issuer-group": "cert-manager.io",
                    "cert-manager.io/common-name": spec["commonName"],
                    "cert-manager.io/alt-names": ",".join(spec["dnsNames"]),
                    "cert-manager.io/ip-sans": "",
                    "cert-manager.io/uri-sans": "",
                },
            },
            "data": {
                "tls.crt": base64.b64encode(pair.cert_pem).decode(),
                "tls.key": base64.b64encode(pair.key_pem).decode(),
                "ca.crt": ca_secret["data"]["tls.crt"],
            },
        },
    )
    (ready,) = wait_ready(kube, namespace, ["tls-b1"], timeout=120)
    pod = _pod(kube, namespace, "tls-b1")
    volumes = {v["name"]: v for v in pod["spec"]["volumes"]}
    assert volumes["tls"]["secret"]["secretName"] == spec["secretName"]
    ca_file = Path(os.environ.get("TMPDIR", "/tmp")) / f"{namespace}-ca.crt"
    ca_file.write_bytes(ca.cert_pem)
    client = tls.client_context(ca_file, spec["dnsNames"][0])
    assert served_serial(ready["status"]["podIP"], PORT, client, spec["dnsNames"][0]) == serial(
        pair.cert_pem
    )
