"""Under POD_NETWORK=netns two pods bind the same port side by side, pods on different
Nodes reach each other, the host reaches pods, EndpointSlices list them, and pods reach a
Service by its ClusterIP and the API server by their in-cluster config (#18)."""

from __future__ import annotations

import json
import subprocess
import urllib.request

from e2e_helpers import ROOT, Kubectl, wait_for

PODS = 2
PORT = 8080


def _deployment(namespace: str) -> str:
    return json.dumps({
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "httpd", "namespace": namespace},
        "spec": {
            "replicas": PODS,
            "selector": {"matchLabels": {"app": "httpd"}},
            "template": {
                "metadata": {"labels": {"app": "httpd"}},
                "spec": {
                    # One Node: the two servers' 0.0.0.0:8080 would clash without netns.
                    "nodeSelector": {"kubernetes.io/hostname": "local-node"},
                    "containers": [{
                        "name": "web",
                        "image": "python:3.12-slim",
                        "command": ["python", "-m", "http.server", str(PORT)],
                        "ports": [{"containerPort": PORT}],
                        "readinessProbe": {"tcpSocket": {"port": PORT}, "periodSeconds": 1},
                    }],
                },
            },
        },
    })  # fmt: skip


def _service(namespace: str) -> str:
    return json.dumps({
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": "httpd", "namespace": namespace},
        "spec": {"selector": {"app": "httpd"}, "ports": [{"port": 80, "targetPort": PORT}]},
    })  # fmt: skip


def _running(kubectl: Kubectl, namespace: str) -> list[dict[str, object]]:
    pods = json.loads(
        kubectl("get", "pods", "-n", namespace, "-l", "app=httpd", "-o", "json").stdout
    )
    return [
        p for p in pods["items"]
        if p["status"].get("podIP")
        and all(c.get("ready") for c in p["status"].get("containerStatuses", [{}]))
        and p["status"].get("containerStatuses")
    ]  # fmt: skip


def _get(url: str) -> int:
    with urllib.request.urlopen(url, timeout=5) as resp:
        return int(resp.status)


def test_two_servers_on_one_port_run_side_by_side_and_are_reached(
    kubectl: Kubectl, namespace: str
) -> None:
    kubectl("apply", "-f", "-", input=_deployment(namespace))
    kubectl("apply", "-f", "-", input=_service(namespace))
    pods = wait_for(
        lambda: (r if len(r := _running(kubectl, namespace)) == PODS else None),
        timeout=90, what=f"{PODS} http.server pods Ready",
    )  # fmt: skip
    ips = sorted(str(p["status"]["podIP"]) for p in pods)  # type: ignore[index]
    assert len(set(ips)) == PODS
    assert not any(ip.startswith("127.") for ip in ips)
    restarts = [
        c["restartCount"]
        for p in pods
        for c in p["status"]["containerStatuses"]  # type: ignore[index]
    ]
    assert restarts == [0] * PODS, "a server crashed (EADDRINUSE?)"
    # The host (where the operator runs in tests) reaches each pod at its own address.
    assert [_get(f"http://{ip}:{PORT}/") for ip in ips] == [200] * PODS

    # The endpointslice controller lists both pods, Ready, for the Service.
    def endpoints() -> list[str] | None:
        out = kubectl(
            "get", "endpointslices", "-n", namespace,
            "-l", "kubernetes.io/service-name=httpd", "-o", "json",
        ).stdout  # fmt: skip
        found = sorted(
            e["addresses"][0]
            for s in json.loads(out)["items"]
            for e in s.get("endpoints") or []
            if e.get("conditions", {}).get("ready")
        )
        return found if found == ips else None

    wait_for(endpoints, timeout=60, what="EndpointSlices listing both pods")

    # A pod on another Node reaches a server pod through the shared bridge, the Service
    # by its ClusterIP (both servers, picked at random), and the API server with the
    # in-cluster config its kubelet gave it (the `kubernetes` Service).
    cluster_ip = kubectl(
        "get", "service", "httpd", "-n", namespace, "-o", "jsonpath={.spec.clusterIP}"
    ).stdout  # fmt: skip
    other_node = {"spec": {"nodeSelector": {"kubernetes.io/hostname": "local-node-2"}}}
    kubectl(
        "run", "client", "-n", namespace, "--image=python:3.12-slim", "--restart=Never",
        "--overrides", json.dumps(other_node), "--command", "--", "python", "-c",
        CLIENT % {"pod": f"http://{ips[0]}:{PORT}/", "service": f"http://{cluster_ip}:80/"},
    )  # fmt: skip

    def client_done() -> str | None:
        phase = kubectl("get", "pod", "client", "-n", namespace, "-o", "jsonpath={.status.phase}")
        return phase.stdout if phase.stdout in ("Succeeded", "Failed") else None

    done = wait_for(client_done, timeout=60, what="the cross-Node client pod")
    out = kubectl("logs", "client", "-n", namespace).stdout
    assert done == "Succeeded", out
    seen = json.loads(out.strip().splitlines()[-1])
    assert seen["pod"] == 200
    assert seen["service"] == [200] * 20
    # The Service balanced over both servers: each logs every request, the host's two,
    # the pod's one and the twenty through the ClusterIP.
    served = [
        kubectl("logs", str(p["metadata"]["name"]), "-n", namespace).stdout.count('"GET / ')  # type: ignore[index]
        for p in pods
    ]
    assert sum(served) == 2 + 1 + 20, served  # before the restart's two below
    assert min(served) >= 1, served
    assert seen["api"]["host"] == "10.96.0.1"
    assert seen["api"]["user"] == f"system:serviceaccount:{namespace}:default"

    # Restarted kubelets adopt the servers in the namespaces they run in: same
    # addresses, still answering (a stopping kubelet once tore the namespaces down).
    subprocess.run(
        [str(ROOT / "hack" / "cluster.sh"), "restart-kubelet"], check=True, timeout=120,
        capture_output=True,
    )  # fmt: skip
    after = wait_for(
        lambda: (r if len(r := _running(kubectl, namespace)) == PODS else None),
        timeout=30, what=f"{PODS} http.server pods Ready after the kubelets' restart",
    )  # fmt: skip
    assert sorted(str(p["status"]["podIP"]) for p in after) == ips  # type: ignore[index]
    assert [_get(f"http://{ip}:{PORT}/") for ip in ips] == [200] * PODS


# Runs in the client pod: what it reached, as one JSON line.
CLIENT = """
import json, os, ssl, urllib.request
get = lambda url: urllib.request.urlopen(url, timeout=5).status
account = "/var/run/secrets/kubernetes.io/serviceaccount"
host, port = os.environ["KUBERNETES_SERVICE_HOST"], os.environ["KUBERNETES_SERVICE_PORT"]
review = urllib.request.Request(
    f"https://{host}:{port}/apis/authentication.k8s.io/v1/selfsubjectreviews",
    data=b'{"apiVersion": "authentication.k8s.io/v1", "kind": "SelfSubjectReview"}',
    headers={"Authorization": "Bearer " + open(account + "/token").read(),
             "Content-Type": "application/json"},
)
tls = ssl.create_default_context(cafile=account + "/ca.crt")
with urllib.request.urlopen(review, timeout=5, context=tls) as resp:
    user = json.load(resp)["status"]["userInfo"]["username"]
print(json.dumps({"pod": get(%(pod)r), "service": [get(%(service)r) for _ in range(20)],
                  "api": {"host": host, "user": user}}))
"""
