"""A node farm: the simulated runtime for marketplace-node containers (as kwok does for pods).

With `LOCAL_KUBELET_SIMULATE_NODES=1` (or on a pod annotated `SIMULATE_ANNOTATION`),
a marketplace-node container is not a
process (about 90 MiB each) but a `VirtualNode` in this kubelet's event loop:
one aiohttp server on the pod's IP, p2p and private ports that answers `/healthz`,
`/readyz` and the whole admin API with the node's own code — the admin routes
and bearer-token check (`marketplace_node.admin`), a real `PolicyEnforcer`
(policy documents compiled and applied as on a node) and `DrainCoordinator`
— under the identity and admin token mounted from the pod's Secrets. So the
operator does exactly the work it does for real nodes: the same pods, probes,
readiness gates, status polls, member and policy pushes, drains.

What it skips, honestly: the catalogue, gossip, sync and client API (a
virtual node reports the operator's members as its peers, as many as a node's
peer table holds, and is ready as soon as it serves), the node's CPU and
memory, and following the mounted policy ConfigMap after start: like a node, it
puts the mounted policy in force when it starts (so the operator need not push
a starting node the policy it already has), and from then on only pushes change
it. SIGTERM ends a virtual node as a drained node exits (0); SIGKILL as a killed
one (137). The kubelet's HTTP probes of a virtual node's `/healthz` and
`/readyz` are answered in the kubelet's own loop (`Virtual.probe`: the same
answers, without the loopback round trip): every pod's readiness probe runs each
second, and at 1,000 pods those round trips were a quarter of a core, taken from
the operator being measured on the same machine.
"""

from __future__ import annotations

import asyncio
import functools
import itertools
import json
import logging
import signal
import socket
import time
from collections.abc import Sequence
from pathlib import Path

from aiohttp import web
from marketplace_node.admin import auth, routes
from marketplace_node.admin.backend import NodeAdmin
from marketplace_node.config import NodeSettings
from marketplace_node.drain import DrainCoordinator
from marketplace_node.policy.enforcer import PolicyEnforcer
from marketplace_node.policy.watch import read_policy
from marketplace_protocol import errors, identity
from marketplace_protocol.admin import (
    DrainState,
    Members,
    NodeStatus,
    PeerInfo,
    PolicyApplied,
)
from marketplace_protocol.clock import SystemClock
from marketplace_protocol.parts import TornParts

from local_kubelet.model import ContainerPort, Handler
from local_kubelet.netns import run_in
from local_kubelet.podspec import ProcessPlan
from local_kubelet.probes import resolve_port

log = logging.getLogger(__name__)
NODE_COMMAND = "marketplace-node"
TOKEN_OVERLAP = NodeSettings.model_fields["admin_token_overlap_seconds"].default
MAX_PEERS: int = NodeSettings.model_fields["max_peers"].default
"""A node's peer table holds this many peers (the operator's members are pinned into it
until it is full), so its status never lists more: a virtual node listing every member
was O(N) per status poll, O(N^2) per poll round, for the farm as for the operator."""


SIMULATE_ANNOTATION = "local-kubelet.p2p.dev/simulate"
"""On a pod, `"true"`: the farm serves its node container even when the kubelet does not
simulate every node (the scale smoke in `make test` shares the ordinary cluster)."""


def simulated(pod_annotations: dict[str, str]) -> bool:
    return pod_annotations.get(SIMULATE_ANNOTATION) == "true"


def serves(plan: ProcessPlan) -> bool:
    """Whether the farm simulates this container: the node image's command, `run`."""
    return bool(plan.argv) and Path(plan.argv[0]).name == NODE_COMMAND and "run" in plan.argv[1:]


def host_path(plan: ProcessPlan, container_path: str) -> Path:
    """Where a path inside the container lives on this machine (through the plan's mounts)."""
    holding = [
        m
        for m in plan.mounts
        if container_path == m.target.rstrip("/")
        or container_path.startswith(m.target.rstrip("/") + "/")
    ]
    if not holding:
        return Path(container_path)
    best = max(holding, key=lambda m: len(m.target.rstrip("/")))  # the innermost mount
    return Path(best.source) / container_path[len(best.target.rstrip("/")) :].lstrip("/")


class VirtualNode:
    """One simulated node: the real admin API and policy door, no catalogue."""

    def __init__(self, plan: ProcessPlan, pod_ip: str, *, events: Path) -> None:
        env = plan.env
        self.events = events
        clock = SystemClock()
        self.address = f"http://{pod_ip}:{env.get('MARKETPLACE_NODE_PORT', '7070')}"
        self.port = int(env.get("MARKETPLACE_NODE_PORT", "7070"))
        # The node's private listener (admin API, probes); a node before the split had one.
        private = int(env.get("MARKETPLACE_NODE_PRIVATE_PORT", "0"))
        self.ports = sorted({self.port, private} - {0})
        self.pod_ip = pod_ip
        self.fleet = env.get("MARKETPLACE_NODE_FLEET", "default")
        key_file = env.get("MARKETPLACE_NODE_IDENTITY_FILE")
        self.identity = (
            identity.load_or_create(host_path(plan, key_file))
            if key_file
            else identity.Identity.generate()
        )
        token_file = env.get("MARKETPLACE_NODE_ADMIN_TOKEN_FILE")
        self.token = (
            auth.TokenFile(host_path(plan, token_file), overlap=TOKEN_OVERLAP).accepted
            if token_file
            else auth.fixed(None)
        )
        self.enforcer = PolicyEnforcer(clock, node_id=self.identity.peer_id)
        drain_timeout = float(env.get("MARKETPLACE_NODE_DRAIN_TIMEOUT_SECONDS", "30"))
        self.drain = DrainCoordinator(clock, timeout=drain_timeout)
        self.members = Members()
        policy_dir = env.get("MARKETPLACE_NODE_POLICY_DIR")
        self.policy_dir = host_path(plan, policy_dir) if policy_dir else None

    async def load_mounted_policy(self) -> None:
        """Put the mounted policy in force, as a node does when it starts (`PolicyDirWatcher`);
        a missing, torn or broken one is skipped as there: the operator's push follows."""
        if self.policy_dir is None:
            return
        try:
            doc = await asyncio.to_thread(read_policy, self.policy_dir)
            if doc is not None:
                await self.enforcer.apply_async(doc)
        except (OSError, errors.NodeError, TornParts) as exc:  # unreadable, invalid, stale, torn
            log.info("virtual node %s: mounted policy skipped: %s", self.pod_ip, exc)

    def probe_answer(self, path: str) -> bool | None:
        """What `/healthz` and `/readyz` answer (True: a 2xx), as `app` serves them; None
        for any other path."""
        if path == "/healthz":
            return True
        if path == "/readyz":
            return not self.draining
        return None

    async def status(self) -> NodeStatus:
        policy = self.enforcer.status
        listed = (  # lazily: only the first MAX_PEERS are built
            PeerInfo(peer_id=m.peer_id, address=m.address)
            for m in self.members.members
            if m.peer_id and m.peer_id != self.identity.peer_id
        )
        peers = list(itertools.islice(listed, MAX_PEERS))
        return NodeStatus(
            peer_id=self.identity.peer_id,
            fleet=self.fleet,
            peers=peers,
            policy_version=policy.version,
            policy_hash=policy.hash,
            draining=self.draining,
            ready=not self.draining,
            local_bans=policy.local_bans,
        )

    @property
    def draining(self) -> bool:
        return self.drain.status().state is not DrainState.SERVING

    async def set_members(self, members: Members) -> None:
        self.members = members

    async def on_policy(self, applied: PolicyApplied) -> None:
        """Record when this node put a policy in force (the scale benchmark's propagation)."""
        line = json.dumps(
            {"at": time.time(), "ip": self.pod_ip, "version": applied.version, "hash": applied.hash}
        )
        with self.events.open("a") as out:  # one short line: atomic enough for O_APPEND
            out.write(line + "\n")

    def app(self) -> web.Application:
        app = web.Application()

        async def healthz(_: web.Request) -> web.Response:
            return web.Response(text="ok")

        async def readyz(_: web.Request) -> web.Response:
            ready = not self.draining
            return web.Response(
                text="ready" if ready else "not ready", status=200 if ready else 503
            )

        app.router.add_get("/healthz", healthz)
        app.router.add_get("/readyz", readyz)
        backend = NodeAdmin(
            enforcer=self.enforcer,
            drain=self.drain,
            status=self.status,
            set_members=self.set_members,
            on_policy=self.on_policy,
        )
        routes.add_admin_routes(app, backend, self.token)
        return app


class Virtual:
    """A running virtual node, as the container runner sees a process."""

    pid = 0  # no process: exec probes and hooks have nothing to enter

    def __init__(self, node: VirtualNode, runner: web.AppRunner) -> None:
        self.node, self._runner = node, runner
        self._exit: asyncio.Future[int] = asyncio.get_running_loop().create_future()

    async def wait(self) -> int:
        code = await self._exit
        await self._runner.cleanup()
        return code

    def probe(self, handler: Handler, ports: Sequence[ContainerPort]) -> bool | None:
        """A kubelet probe of this node answered in process (module docstring); None when it
        is not an httpGet of its own probe paths on the pod (then it is probed over HTTP)."""
        get = handler.http_get
        if get is None or get.host or get.scheme.upper() != "HTTP":
            return None
        answer = self.node.probe_answer(get.path)
        if answer is None:
            return None
        try:
            return answer and resolve_port(get.port, ports) in self.node.ports
        except ValueError:
            return False  # not a port of the container: a probe over HTTP fails too

    def signal(self, sig: int) -> None:
        if not self._exit.done():
            self._exit.set_result(137 if sig == signal.SIGKILL else 0)


def _listener(pod_ip: str, port: int) -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((pod_ip, port))
    return sock


async def launch(
    plan: ProcessPlan, pod_ip: str, *, events: Path, netns: Path | None = None
) -> Virtual:
    """Serve a virtual node on the pod's IP and port (what `runtime.launch` is for processes):
    under POD_NETWORK=netns its listeners are made inside the pod's network namespace, where
    the pod's address is, and served from this loop like any other."""
    node = VirtualNode(plan, pod_ip, events=events)
    await node.load_mounted_policy()
    runner = web.AppRunner(node.app(), access_log=None, handle_signals=False)
    await runner.setup()
    for port in node.ports:  # the same answers on both: a farm node has no client API
        if netns is None:
            await web.TCPSite(runner, pod_ip, port).start()
        else:
            sock = run_in(netns, functools.partial(_listener, pod_ip, port))
            await web.SockSite(runner, sock).start()
    log.info("virtual node %s at %s", node.identity.peer_id[:12], node.address)
    return Virtual(node, runner)
