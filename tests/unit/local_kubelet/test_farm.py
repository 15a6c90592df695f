"""The node farm: which containers it simulates, where their mounted files are, and a
virtual node answering the real admin API (token, policy, members, drain, probes)."""

from __future__ import annotations

import json
import signal
from pathlib import Path

from aiohttp.test_utils import TestClient, TestServer
from local_kubelet import farm
from local_kubelet.model import ContainerPort, Handler, HttpGet, TcpSocket
from local_kubelet.podspec import Mount, ProcessPlan
from marketplace_protocol import identity
from marketplace_protocol.admin import Members

TOKEN = "s3cret-admin-token"


def plan(
    tmp_path: Path, argv: tuple[str, ...] = ("/x/.venv/bin/marketplace-node", "run")
) -> ProcessPlan:
    (tmp_path / "admin").mkdir(exist_ok=True)
    (tmp_path / "admin" / "token").write_text(TOKEN)
    (tmp_path / "id").mkdir(exist_ok=True)
    key = identity.Identity.generate()
    (tmp_path / "id" / "ed25519.pem").write_bytes(key.to_pem())
    return ProcessPlan(
        container="node",
        argv=argv,
        env={
            "MARKETPLACE_NODE_PORT": "7070",
            "MARKETPLACE_NODE_FLEET": "f",
            "MARKETPLACE_NODE_ADMIN_TOKEN_FILE": "/var/run/admin/token",
            "MARKETPLACE_NODE_IDENTITY_FILE": "/var/run/identity/ed25519.pem",
        },
        mounts=(
            Mount(str(tmp_path / "admin"), "/var/run/admin", read_only=True),
            Mount(str(tmp_path / "id"), "/var/run/identity/", read_only=True),
            Mount(str(tmp_path), "/var/run", read_only=True),
        ),
    )


def test_only_the_node_command_run_is_simulated(tmp_path: Path) -> None:
    assert farm.serves(plan(tmp_path))
    assert not farm.serves(plan(tmp_path, ("/x/.venv/bin/marketplace-node", "peers")))
    assert not farm.serves(plan(tmp_path, ("/x/.venv/bin/marketplace-operator",)))
    assert not farm.serves(plan(tmp_path, ()))


def test_container_paths_resolve_through_the_innermost_mount(tmp_path: Path) -> None:
    p = plan(tmp_path)
    assert farm.host_path(p, "/var/run/admin/token") == tmp_path / "admin" / "token"
    assert farm.host_path(p, "/var/run/identity/ed25519.pem") == tmp_path / "id" / "ed25519.pem"
    assert farm.host_path(p, "/var/run/other") == tmp_path / "other"
    assert farm.host_path(p, "/etc/hosts") == Path("/etc/hosts")


async def test_a_virtual_node_answers_the_admin_api_as_a_node_does(tmp_path: Path) -> None:
    events = tmp_path / "events.jsonl"
    node = farm.VirtualNode(plan(tmp_path), "127.0.0.1", events=events)
    pem = (tmp_path / "id" / "ed25519.pem").read_bytes()
    assert node.identity.peer_id == identity.from_pem(pem).peer_id  # the pod's own identity
    auth = {"Authorization": f"Bearer {TOKEN}"}
    async with TestClient(TestServer(node.app())) as client:
        assert (await client.get("/admin/v1/status")).status == 401
        assert (await client.get("/readyz")).status == 200
        put = await client.put("/admin/v1/policy", json={"version": 7}, headers=auth)
        assert put.status == 200, await put.text()
        other = identity.Identity.generate().peer_id
        members = {"members": [{"address": "http://127.0.0.9:7070", "peerId": other}]}
        assert (await client.put("/admin/v1/members", json=members, headers=auth)).status < 300
        status = await (await client.get("/admin/v1/status", headers=auth)).json()
        assert status["policyVersion"] == 7
        assert [p["peerId"] for p in status["peers"]] == [other]
        assert status["ready"] is True
        assert status["localBans"] == 0
        assert (await client.post("/admin/v1/drain", json={}, headers=auth)).status == 202
        assert (await client.get("/readyz")).status == 503
    recorded = [json.loads(line) for line in events.read_text().splitlines()]
    assert [(e["ip"], e["version"]) for e in recorded] == [("127.0.0.1", 7)]


async def test_sigterm_exits_as_a_drained_node_and_sigkill_as_a_killed_one(tmp_path: Path) -> None:
    for sig, code in ((signal.SIGTERM, 0), (signal.SIGKILL, 137)):
        p = plan(tmp_path)
        env = dict(p.env) | {"MARKETPLACE_NODE_PORT": "0"}
        virtual = await farm.launch(
            ProcessPlan(p.container, p.argv, env, p.mounts), "127.0.0.1", events=tmp_path / "e"
        )
        virtual.signal(sig)
        virtual.signal(signal.SIGKILL)  # a second signal changes nothing
        assert await virtual.wait() == code


async def test_a_virtual_node_lists_as_many_peers_as_a_node_s_peer_table_holds(
    tmp_path: Path,
) -> None:
    """A real node pins the operator's members into a table of `max_peers`; its status
    never lists more, however big the fleet (nor does the farm's, which was O(N) a poll)."""
    node = farm.VirtualNode(plan(tmp_path), "127.0.0.1", events=tmp_path / "e")
    ids = [identity.Identity.generate().peer_id for _ in range(farm.MAX_PEERS + 6)]
    listed = [{"address": f"http://127.0.1.{i}:7070", "peerId": p} for i, p in enumerate(ids)]
    mine = {"address": "http://127.0.0.1:7070", "peerId": node.identity.peer_id}
    await node.set_members(Members.model_validate({"members": [mine, *listed]}))
    status = await node.status()
    assert [p.peer_id for p in status.peers] == ids[: farm.MAX_PEERS]
    assert farm.MAX_PEERS == 64


async def test_the_kubelet_s_probes_of_a_virtual_node_get_its_http_answers_in_process(
    tmp_path: Path,
) -> None:
    node = farm.VirtualNode(plan(tmp_path), "127.0.0.1", events=tmp_path / "e")
    virtual = farm.Virtual(node, runner=None)  # type: ignore[arg-type]  # never waited on
    ports = [ContainerPort(name="admin", container_port=7070)]

    def probe(path: str, port: int | str = 7070, **extra: str) -> bool | None:
        return virtual.probe(Handler(http_get=HttpGet(path=path, port=port, **extra)), ports)

    auth = {"Authorization": f"Bearer {TOKEN}"}
    async with TestClient(TestServer(node.app())) as client:
        for path in ("/healthz", "/readyz"):  # as the node's own app answers, before and after
            assert probe(path) is probe(path, "admin") is ((await client.get(path)).status == 200)
        assert (await client.post("/admin/v1/drain", json={}, headers=auth)).status == 202
        assert probe("/readyz") is False
        assert (await client.get("/readyz")).status == 503
        assert probe("/healthz") is True
    assert probe("/readyz", 9999) is False  # nothing listens there
    assert probe("/metrics") is None  # not a probe path: over HTTP, as before
    assert probe("/healthz", host="127.0.0.2") is None
    assert virtual.probe(Handler(tcp_socket=TcpSocket(port=7070)), ports) is None


async def test_a_virtual_node_starts_on_the_mounted_policy_as_a_node_does(tmp_path: Path) -> None:
    """A node starting puts its mounted ConfigMap's policy in force before any push: a farm
    node that did not would make the operator push every starting node (work a real fleet
    does not cause). A broken file is skipped, as the node's watcher skips it."""
    base = plan(tmp_path)
    (tmp_path / "policy").mkdir()
    mounted = ProcessPlan(
        container=base.container,
        argv=base.argv,
        env={**base.env, "MARKETPLACE_NODE_POLICY_DIR": "/etc/policy"},
        mounts=(*base.mounts, Mount(str(tmp_path / "policy"), "/etc/policy", read_only=True)),
    )
    empty = farm.VirtualNode(mounted, "127.0.0.1", events=tmp_path / "e.jsonl")
    await empty.load_mounted_policy()
    assert (await empty.status()).policy_version is None  # no policy written yet
    (tmp_path / "policy" / "policy.json").write_text(json.dumps({"version": 4}))
    node = farm.VirtualNode(mounted, "127.0.0.1", events=tmp_path / "e.jsonl")
    await node.load_mounted_policy()
    assert (await node.status()).policy_version == 4
    (tmp_path / "policy" / "policy.json").write_text("{not json")
    broken = farm.VirtualNode(mounted, "127.0.0.1", events=tmp_path / "e.jsonl")
    await broken.load_mounted_policy()
    assert (await broken.status()).policy_version is None
