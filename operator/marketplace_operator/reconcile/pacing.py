"""How often the operator polls each node (and writes its paced status details): a
per-node interval, stretched by fleet size.

Every change the operator acts on arrives as a watch event; only a node's own news
(joined, peers, policy in force, drained) needs its admin API asked. A fixed interval
per node makes the polls of all nodes together grow with their number: at 1,000 nodes
and 5 s, 200 passes a second, each a reconcile and an HTTP round trip, whatever the
fleet is doing. Over a phase whose length also grows with the fleet (a rollout of
1,000 takes twenty times one of 100 on one machine) that is N^2 work: most of the
operator's CPU in a 1,000-node rollout (issue 15). So the interval is the configured
one until the nodes polled together would exceed a rate, and stretched beyond it:
the polls a second are then constant, and their cost grows with the time, not with
the time times the fleet. The status details a pass holds back (`nodeloop.status_delay`)
are paced the same way: each is a write and a watch event for every client of
MarketplaceNodes.
"""

from __future__ import annotations


def paced_interval(base: float, nodes: int, per_second: float) -> float:
    """Seconds between two polls (or paced writes) of one node: `base`, or longer when the
    `nodes` at this pace would together make more than `per_second` a second."""
    return max(base, nodes / per_second)


JOIN_BACKOFF_CAP_SECONDS = 2.0


def joining_interval(base: float, waited: float) -> float:
    """Seconds until the next poll of a node that has been joining for `waited` seconds:
    `base` at first, then half the time waited so far, up to `JOIN_BACKOFF_CAP_SECONDS`
    (its join is seen at most half its wait, and at most 2 s, late). A fleet's nodes
    join in a second or two when the machine is idle; on a busy one, where a 1,000-node
    rollout's new nodes waited six seconds on average, polls every `base` were thirteen
    a node, and a third of the operator's admin calls (issue 15)."""
    return max(base, min(JOIN_BACKOFF_CAP_SECONDS, waited / 2))


def silence_tolerated(silence: float, failures: int, interval: float) -> float:
    """How long a joined node may go unanswered before its gate turns off: the
    configured `silence`, or the time `failures` polls take at a stretched `interval`
    (a single missed poll of a big fleet must not take a healthy node out)."""
    return max(silence, failures * interval)
