"""A network namespace per pod (POD_NETWORK=netns), wired by the CNI bridge plugin.

Every local Node of a cluster plugs its pods into one bridge of the host, and every pod
address carries the cluster's whole pod range as its prefix: pods on different Nodes
reach each other on the bridge itself, so the host needs no forwarding and no routes
between bridges. The bridge holds the range's first address, so the host (the operator,
the kubelet's probes) reaches every pod. Each Node's host-local IPAM hands out addresses
only from its own slice of the range.
"""

from __future__ import annotations

import asyncio
import ctypes
import ipaddress
import json
import logging
import os
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

log = logging.getLogger(__name__)

CNI_PATH = os.environ.get("CNI_PATH", "/usr/lib/cni")
NETNS_DIR = Path("/run/netns")


T = TypeVar("T")
CLONE_NEWNET = 0x40000000
_libc = ctypes.CDLL(None, use_errno=True)


def run_in(netns: Path, fn: Callable[[], T]) -> T:
    """`fn()` inside the network namespace `netns`, in a thread of its own: setns(2) moves
    only the calling thread, and that thread ends with the call. Sockets `fn` makes stay in
    the namespace (a farm node's listener, a test's client from a pod's address)."""
    done: list[T] = []
    failed: list[BaseException] = []

    def enter_and_call() -> None:
        try:
            with open(netns) as target:
                if _libc.setns(target.fileno(), CLONE_NEWNET) != 0:
                    err = ctypes.get_errno()
                    raise OSError(err, f"setns {netns}: {os.strerror(err)}")
            done.append(fn())
        except BaseException as exc:  # handed to the caller's thread
            failed.append(exc)

    worker = threading.Thread(target=enter_and_call, name=f"netns {netns.name}")
    worker.start()
    worker.join()
    if failed:
        raise failed[0]
    return done[0]


class NetnsError(RuntimeError):
    """A pod's network namespace (or the Service rules, proxy.py) could not be made or wired."""


def cni_config(
    *,
    name: str,
    bridge: str,
    cluster: ipaddress.IPv4Network,
    node: ipaddress.IPv4Network,
    data_dir: Path,
    services: ipaddress.IPv4Network | None = None,
) -> dict[str, Any]:
    """The bridge plugin's network config for one Node's slice of the cluster range (pure).

    Pods get one route beyond their link: the Service range, through the bridge, where
    the host's rules (proxy.py) turn ClusterIPs into pods and the API server. No default
    route: nothing else is reachable from this machine anyway.
    """
    return {
        "cniVersion": "1.0.0",
        "name": name,
        "type": "bridge",
        "bridge": bridge,
        "isGateway": True,
        "ipMasq": False,
        "hairpinMode": True,
        "ipam": {
            "type": "host-local",
            "dataDir": str(data_dir),
            "ranges": [
                [
                    {
                        "subnet": str(cluster),
                        "rangeStart": str(node.network_address + 2),
                        "rangeEnd": str(node.broadcast_address - 1),
                        "gateway": str(cluster.network_address + 1),
                    }
                ]
            ],
            "routes": [{"dst": str(services)}] if services else [],
        },
    }


def netns_name(prefix: str, uid: str) -> str:
    return f"{prefix}-{uid}"


async def run(*argv: str, stdin: bytes | None = None, env: dict[str, str] | None = None) -> bytes:
    proc = await asyncio.create_subprocess_exec(
        *argv,
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env=env,
    )
    out, err = await proc.communicate(stdin)
    if proc.returncode != 0:
        raise NetnsError(f"{argv[0]} {' '.join(argv[1:3])}: {(err or out).decode().strip()}")
    return out


class PodNetwork:
    """Makes, finds and removes the network namespace of each pod of one Node."""

    def __init__(self, config: dict[str, Any], prefix: str) -> None:
        self._config = json.dumps(config).encode()
        self._prefix = prefix

    def path(self, uid: str) -> Path:
        return NETNS_DIR / netns_name(self._prefix, uid)

    def _cni_env(self, command: str, uid: str) -> dict[str, str]:
        return {
            "PATH": os.environ.get("PATH", "/usr/sbin:/usr/bin:/sbin:/bin"),
            "CNI_COMMAND": command,
            "CNI_CONTAINERID": uid,
            "CNI_NETNS": str(self.path(uid)),
            "CNI_IFNAME": "eth0",
            "CNI_PATH": CNI_PATH,
        }

    async def _address(self, uid: str) -> str | None:
        out = await run(
            "ip", "-n", netns_name(self._prefix, uid), "-4", "-j", "addr", "show", "eth0"
        )
        for link in json.loads(out or b"[]"):
            for info in link.get("addr_info", []):
                return str(info["local"])
        return None

    async def attach(self, uid: str) -> str:
        """The pod's address: the one its namespace has (a restarted kubelet), else a new one."""
        name, started = netns_name(self._prefix, uid), time.monotonic()
        if self.path(uid).exists():
            try:
                if address := await self._address(uid):
                    return address
            except NetnsError:
                pass
        else:
            await run("ip", "netns", "add", name)
        await run("ip", "-n", name, "link", "set", "lo", "up")
        out = await run(f"{CNI_PATH}/bridge", stdin=self._config, env=self._cni_env("ADD", uid))
        ips = json.loads(out).get("ips", [])
        if not ips:
            raise NetnsError(f"CNI gave pod {uid} no address: {out.decode()}")
        address = str(ips[0]["address"]).split("/", 1)[0]
        took = time.monotonic() - started
        log.info("pod %s: netns %s, address %s (%.0f ms)", uid, name, address, took * 1000)
        return address

    async def detach(self, uid: str) -> None:
        """Give the address back and delete the namespace (its veth goes with it)."""
        if not self.path(uid).exists():
            return
        started = time.monotonic()
        try:
            await run(f"{CNI_PATH}/bridge", stdin=self._config, env=self._cni_env("DEL", uid))
        except NetnsError as exc:
            log.warning("pod %s: CNI DEL: %s", uid, exc)
        try:
            await run("ip", "netns", "delete", netns_name(self._prefix, uid))
        except NetnsError as exc:
            log.warning("pod %s: %s", uid, exc)
        took = time.monotonic() - started
        log.info("pod %s: netns removed (%.0f ms)", uid, took * 1000)
