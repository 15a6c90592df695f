"""The fleet admin token can change under running nodes without taking them out of service
(issue #19, defects 1 and 7): nodes follow their mounted Secret, the operator tries the
token before a change during the overlap, and a node deleted meanwhile is still drained."""

from __future__ import annotations

import base64
import time
import urllib.error
import urllib.request

from e2e_helpers import OperatorProcess, condition, mnode_body, wait_for, wait_ready
from marketplace_operator import k8s
from test_mnode_lifecycle import reasons


def _token(kube: k8s.BlockingKube, namespace: str, name: str) -> str | None:
    secret = kube.get(k8s.SECRETS, namespace, name)
    return None if secret is None else base64.b64decode(secret["data"]["token"]).decode()


def _accepts(address: str, token: str) -> bool:
    request = urllib.request.Request(
        f"{address}/admin/v1/status", headers={"Authorization": f"Bearer {token}"}
    )
    try:
        with urllib.request.urlopen(request, timeout=5):
            return True
    except urllib.error.HTTPError:
        return False


def test_deleting_the_admin_secret_keeps_the_fleet_in_service(
    kube: k8s.BlockingKube, namespace: str, operator: OperatorProcess
) -> None:
    kube.create(k8s.MNODES, mnode_body("keyed", namespace, fleet="tok"))
    (ready,) = wait_ready(kube, namespace, ["keyed"])
    address = f"http://{ready['status']['podIP']}:9070"  # the private listener
    old = _token(kube, namespace, "tok-admin")
    assert old is not None
    assert _accepts(address, old)

    assert kube.delete(k8s.SECRETS, namespace, "tok-admin")
    new = wait_for(
        lambda: (t := _token(kube, namespace, "tok-admin")) != old and t,
        timeout=30,
        what="the operator to recreate the admin Secret",
    )
    # The node follows its mounted Secret (the kubelet syncs the volume) ...
    wait_for(lambda: _accepts(address, str(new)), timeout=30, what="the node to take the new token")
    assert _accepts(address, str(old)), "the previous token is accepted during the overlap"
    # ... and stays in service throughout: more than the gate's 15 s of tolerated silence.
    until = time.monotonic() + 20
    while time.monotonic() < until:
        obj = kube.get(k8s.MNODES, namespace, "keyed")
        ready_now = condition(obj, "Ready")
        assert (ready_now or {}).get("status") == "True", obj and obj["status"]
        time.sleep(1)

    kube.delete(k8s.MNODES, namespace, "keyed")
    wait_for(lambda: kube.get(k8s.MNODES, namespace, "keyed") is None, timeout=60, what="deletion")
    seen = reasons(kube, namespace, "keyed")
    assert "Drained" in seen, seen
    assert "DrainSkipped" not in seen, seen
    assert "refuses the fleet's admin token" not in operator.logs()
