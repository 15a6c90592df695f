"""Polling every node for every package as a client must: within the nodes' default limits.

A probe that asks each node for each package every round (12 packages: 12 requests per
node every 0.3 s, ~40/s) outruns the default per-address `fetch` limit (20/s, burst 40)
within a few rounds; its 429s then count as violations, and the 20th bans the test's
address for 60 s (403): every later round fails, whatever the nodes hold. So a round asks
only what was not served yet (a node that served a package holds its bytes from then on),
and stops at a node's first refusal: a node not caught up yet is asked again next round,
one request, not one per package.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

Read = Callable[[int, str], tuple[int, bytes]]
"""(node index, package id) -> (HTTP status, body) of one read."""


@dataclass
class Everywhere:
    """Each round (a call): True once every node answered 200 for every package.
    `missing` names, per node still short, the first refusal of the last round."""

    read: Read
    nodes: Sequence[int]
    packages: Sequence[str]
    served: set[tuple[int, str]] = field(default_factory=set)
    missing: list[tuple[int, str, int, bytes]] = field(default_factory=list)

    def __call__(self) -> bool:
        self.missing = []
        for node in self.nodes:
            for package in self.packages:
                if (node, package) in self.served:
                    continue
                status, body = self.read(node, package)
                if status != 200:
                    self.missing.append((node, package[:12], status, body[:160]))
                    break
                self.served.add((node, package))
        return not self.missing

    def left(self) -> int:
        """(node, package) pairs not served yet."""
        return len(self.nodes) * len(self.packages) - len(self.served)
