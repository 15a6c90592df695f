"""Hand out one loopback address per pod from the pod CIDR (pure bookkeeping)."""

from __future__ import annotations

import ipaddress


class PoolExhaustedError(RuntimeError):
    """Every address of the pod CIDR is in use."""


class IpPool:
    """Addresses of a CIDR, skipping .0 and .255 so no address looks like a broadcast."""

    def __init__(self, network: ipaddress.IPv4Network) -> None:
        self._network = network
        self._by_owner: dict[str, str] = {}
        self._next = 0

    def _usable(self, address: ipaddress.IPv4Address) -> bool:
        last = int(address) & 0xFF
        return address in self._network and last not in (0, 255)

    def allocate(self, owner: str, prefer: str | None = None) -> str:
        """The owner's address: the one it had, the preferred one if free, else the next free."""
        if owner in self._by_owner:
            return self._by_owner[owner]
        taken = set(self._by_owner.values())
        if prefer:
            try:
                wanted = ipaddress.IPv4Address(prefer)
            except ValueError:
                wanted = None
            if wanted is not None and self._usable(wanted) and prefer not in taken:
                self._by_owner[owner] = prefer
                return prefer
        size = self._network.num_addresses
        for step in range(size):
            offset = (self._next + step) % size
            candidate = self._network.network_address + offset
            if self._usable(candidate) and str(candidate) not in taken:
                self._next = offset + 1
                self._by_owner[owner] = str(candidate)
                return str(candidate)
        raise PoolExhaustedError(f"no free address in {self._network}")

    def reserve(self, owner: str, address: str) -> None:
        """Keep an address a pod already reports for it (a restarted kubelet's pods)."""
        if address not in self._by_owner.values():
            try:
                usable = self._usable(ipaddress.IPv4Address(address))
            except ValueError:
                usable = False
            if usable:
                self._by_owner.setdefault(owner, address)

    def release(self, owner: str) -> None:
        self._by_owner.pop(owner, None)
