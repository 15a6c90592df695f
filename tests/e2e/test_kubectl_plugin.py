"""`kubectl marketplace ...` end to end: the real kubectl finds the plugin on PATH and runs it
against the cluster, with kubectl's flags, output formats and exit codes.

The rollout verbs run in tests/e2e/test_argocd_health.py (restart, pause, status, why,
resume into a failing step) and in the getting-started test (restart to completion)."""

from __future__ import annotations

import base64
import json
import tarfile
from pathlib import Path

import yaml
from e2e_helpers import OperatorProcess, Plugin, wait_for
from marketplace_operator import k8s
from rollout_helpers import make_fleet

BANLISTS = k8s.Resource("banlists", "marketplace.p2p.dev", "v1alpha1")


def test_status_why_bans_search_publish_and_report(
    plugin: Plugin,
    kube: k8s.BlockingKube,
    namespace: str,
    operator: OperatorProcess,
    tmp_path: Path,
) -> None:
    names = make_fleet(kube, namespace, "kp", 2)

    out = plugin("status")
    assert out.returncode == 0, out.stderr
    header, *rows, summary = out.stdout.splitlines()
    assert header.split() == [
        "FLEET", "NAME", "PHASE", "READY", "PEERS", "POLICY", "LAG", "ROLLOUT", "REPLICATION",
        "AGE",
    ]  # fmt: skip
    assert all(r.split()[8] == "healthy" for r in rows)  # no package lacks copies
    assert [r.split()[:4] for r in rows] == [["kp", n, "Ready", "True"] for n in names]
    assert all(r.split()[6] == "0" for r in rows)  # on the fleet's current policy
    assert summary.startswith("fleet kp: rollout Complete, policy v")
    data = json.loads(plugin("status", "kp", "-o", "json").stdout)
    assert [n["name"] for n in data["fleets"][0]["nodes"]] == names
    assert all(n["peers"] == 1 and n["lag"] == 0 for n in data["fleets"][0]["nodes"])
    missing = plugin("status", "nope")
    assert (missing.returncode, missing.stdout) == (1, "")
    assert (
        missing.stderr == f'error: no MarketplaceNodes of fleet "nope" in namespace {namespace}\n'
    )
    bad_context = plugin("status", "--context", "no-such-context")
    assert bad_context.returncode == 1
    assert "no-such-context" in bad_context.stderr
    usage = plugin("rollout", "sideways", "kp")
    assert usage.returncode == 2

    why = plugin("why", names[0])
    assert why.returncode == 0, why.stderr
    assert why.stdout.splitlines()[-1].startswith(
        "Nothing blocks it: Ready and joined with 1 peers"
    )
    assert plugin("why", "ghost").returncode == 1

    # GitOps: --dry-run=client prints the manifest and changes nothing
    ban = ("ban", "add", "abusers", "--cidr", "203.0.113.0/24", "--reason", "scraping")
    dry = plugin(*ban, "--duration", "24h", "--fleet", "kp", "--dry-run=client", "-o", "yaml")
    assert dry.returncode == 0, dry.stderr
    manifest = yaml.safe_load(dry.stdout)
    assert manifest["spec"] == {
        "fleet": "kp",
        "entries": [{"cidr": "203.0.113.0/24", "reason": "scraping", "duration": "24h"}],
    }
    assert kube.get(BANLISTS, namespace, "abusers") is None
    added = plugin(*ban, "--duration", "24h", "--fleet", "kp")
    assert added.stdout == "banlist.marketplace.p2p.dev/abusers created\n", added.stderr
    peer = plugin("ban", "add", "abusers", "--peer", "mp" + "b" * 52, "--reason", "spam")
    assert peer.stdout == "banlist.marketplace.p2p.dev/abusers configured\n", peer.stderr
    bad = plugin("ban", "add", "abusers", "--cidr", "10.0.0.0/8", "--duration", "87601h")
    assert bad.returncode == 1
    assert "3650 days" in bad.stderr

    def converged() -> bool:
        obj = kube.get(BANLISTS, namespace, "abusers") or {}
        st = obj.get("status") or {}
        return st.get("convergedNodes") == "2/2" and st.get("entries") == 2

    wait_for(converged, timeout=30, what="the BanList on every node")
    listed = plugin("ban", "list", "abusers", "-o", "json")
    assert [e["target"] for e in json.loads(listed.stdout)] == [
        "cidr:203.0.113.0/24", "peer:mp" + "b" * 52,
    ]  # fmt: skip
    removed = plugin("ban", "remove", "abusers", "--cidr", "203.0.113.0/24")
    assert removed.returncode == 0, removed.stderr
    obj = kube.get(BANLISTS, namespace, "abusers")
    assert obj is not None
    assert [e.get("peerId") for e in obj["spec"]["entries"]] == ["mp" + "b" * 52]
    again = plugin("ban", "remove", "abusers", "--cidr", "203.0.113.0/24")
    assert again.returncode == 1
    assert "no entry for cidr:203.0.113.0/24" in again.stderr

    payload = tmp_path / "tool.txt"
    payload.write_text("a tool published through the plugin\n")
    pub = plugin("publish", str(payload), "--name", "plugin-tool", "--version", "1.2.3",
                 "--category", "tools", "--node", names[0], "-o", "json")  # fmt: skip
    assert pub.returncode == 0, pub.stderr
    package_id = json.loads(pub.stdout)["id"]

    def found() -> bool:
        got = plugin("search", "plugin-tool", "--node", names[1], "-o", "json")
        return got.returncode == 0 and [r["id"] for r in json.loads(got.stdout)["results"]] == [
            package_id
        ]

    wait_for(found, timeout=30, interval=0.5, what="the package on the other node")
    table = plugin("search", "plugin-tool", "--fleet", "kp")
    assert table.stdout.splitlines()[1].split()[:3] == ["plugin-tool", "1.2.3", "tools"]

    out = plugin("report", "-f", "bundle.tar.gz", "--operator-namespace", namespace)
    assert out.returncode == 0, out.stderr
    token = kube.get(k8s.SECRETS, namespace, "kp-admin")
    assert token is not None
    files = {}
    with tarfile.open(tmp_path / "bundle.tar.gz") as tar:
        for member in tar.getmembers():
            body = tar.extractfile(member)
            assert body is not None
            files[member.name.split("/", 1)[1]] = body.read()
    for part in ("marketplacenodes.yaml", "marketplacefleets.yaml", "banlists.yaml",
                 "pods.yaml", "secrets.yaml", "events.yaml"):  # fmt: skip
        assert f"{namespace}/{part}" in files, sorted(files)
    for name in names:
        assert f"{namespace}/logs/{name}.log" in files
        status = json.loads(files[f"{namespace}/node-status/{name}.json"])
        assert status["fleet"] == "kp"
    assert "cluster/nodes.yaml" in files
    secret_value = token["data"]["token"]
    plain = base64.b64decode(secret_value)
    assert not any(secret_value.encode() in body or plain in body for body in files.values())
    assert b"[REDACTED]" in files[f"{namespace}/secrets.yaml"]
