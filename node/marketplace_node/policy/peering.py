"""Who may peer with this node: the fleet's members, and peers from the allowed networks.

Without a peering rule (no MarketplaceFleet `spec.peering`) a node peers with any node of
its own fleet, from any address, as it always did. With one, the door admits a peer
request only from a member of the fleet (its peer id or its address in the operator's
member list) or from an address inside `allowedNetworks`; anything else is refused with
`peer_not_allowed`. Only peers admitted that way may belong to another fleet. Bans are
checked before this (`PolicyEnforcer.admit`), so a ban wins over an allowance.

Pure: the rule and the member set are values; the service holds the current ones.
"""

from __future__ import annotations

import ipaddress
import urllib.parse
from collections.abc import Iterable
from dataclasses import dataclass

from marketplace_protocol import errors
from marketplace_protocol.admin import Member, Peering

Network = ipaddress.IPv4Network | ipaddress.IPv6Network
Address = ipaddress.IPv4Address | ipaddress.IPv6Address


def host_address(url: str) -> Address | None:
    """The IP literal of a base URL's host; None for a name or an unreadable URL."""
    try:
        host = urllib.parse.urlsplit(url).hostname or ""
        return ipaddress.ip_address(host)
    except ValueError:
        return None


def _address(ip: str) -> Address | None:
    try:
        return ipaddress.ip_address(ip)
    except ValueError:
        return None


@dataclass(frozen=True, slots=True)
class PeeringRule:
    """A compiled `Peering`: parsed networks, the seeds as given."""

    networks: tuple[Network, ...] = ()
    seeds: tuple[str, ...] = ()

    @classmethod
    def of(cls, peering: Peering | None) -> PeeringRule | None:
        if peering is None:
            return None
        networks = tuple(ipaddress.ip_network(c, strict=False) for c in peering.allowed_networks)
        return cls(networks=networks, seeds=tuple(peering.seeds))

    def allows(self, ip: str) -> bool:
        """Is `ip` (a connection's address) inside an allowed network?"""
        address = _address(ip)
        return address is not None and any(address in net for net in self.networks)

    def allows_url(self, url: str) -> bool:
        """May we take the node at `url` as a peer from another fleet: its host is an IP
        literal in an allowed network, or a name the user gave as a seed (no DNS here)."""
        address = host_address(url)
        if address is None:
            return url in self.seeds
        return any(address in net for net in self.networks)


@dataclass(frozen=True, slots=True)
class FleetMembers:
    """The operator's member list, as the door asks it: peer ids and addresses."""

    peer_ids: frozenset[str] = frozenset()
    addresses: frozenset[Address] = frozenset()

    @classmethod
    def of(cls, members: Iterable[Member]) -> FleetMembers:
        listed = list(members)
        addresses = {host_address(m.address) for m in listed}
        return cls(
            peer_ids=frozenset(m.peer_id for m in listed if m.peer_id is not None),
            addresses=frozenset(a for a in addresses if a is not None),
        )

    def includes(self, peer_id: str | None, ip: str) -> bool:
        if peer_id is not None and peer_id in self.peer_ids:
            return True
        address = _address(ip)
        return address is not None and address in self.addresses


def check_peer(
    rule: PeeringRule | None, members: FleetMembers, peer_id: str | None, ip: str
) -> None:
    """Raise `PeerNotAllowed` unless a peer request from `peer_id` at `ip` may come in."""
    if rule is None or members.includes(peer_id, ip) or rule.allows(ip):
        return
    raise errors.PeerNotAllowed(
        "peers from outside the fleet are admitted only from its allowed networks",
        details={"address": ip[:64]},
    )


def foreign_allowed(rule: PeeringRule | None, ip: str) -> bool:
    """May a peer at connection address `ip` that names another fleet be our peer?"""
    return rule is not None and rule.allows(ip)
