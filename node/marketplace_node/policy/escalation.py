"""Escalation from violations to bans of growing length: a pure decision and a bounded tracker.

Violations are counted per offender in a leaky bucket that drains at
`threshold / window` per second: the O(1)-memory form of a sliding window.
It never bans a peer that committed fewer than `threshold` (weighted)
violations in every window of `window_seconds`, and always bans one that
commits `2 * threshold` within one window. Reaching the threshold bans for
`first_ban_seconds * backoff_factor ** (bans so far)`, capped at
`max_ban_seconds`, and empties the bucket (review MAJOR-4).

Weights: a rate-limit hit is 1 violation (honest clients overshoot now and
then); a malformed request 2; invalid data or a bad signature 5 (no honest
peer sends forged or corrupt data); low reputation bans at once, since the
reputation system has already averaged over many observations. A peer id
being banned counts a third of the threshold against its network (/32 or
/64), so the third banned identity minted on one network bans the network:
identities cost nothing to make, networks do.
"""

from __future__ import annotations

import enum
from collections import OrderedDict
from dataclasses import dataclass
from typing import Final, NamedTuple

from marketplace_protocol.admin import Escalation
from marketplace_protocol.clock import elapsed

from marketplace_node import compact

DEFAULT_OFFENDER_CAPACITY: Final = 100_000
"""Offenders remembered at once: ~200 bytes each, so ~20 MB at the cap. The least
recently offending is forgotten first (it then starts again from an empty bucket)."""


class Offence(enum.StrEnum):
    RATE_LIMITED = "rate_limited"
    MALFORMED_REQUEST = "malformed_request"
    INVALID_DATA = "invalid_data"
    BAD_SIGNATURE = "bad_signature"
    LOW_REPUTATION = "low_reputation"
    BANNED_IDENTITY = "banned_identity"  # counted against a network when one of its peers is banned


WEIGHTS: Final[dict[Offence, float]] = {
    Offence.RATE_LIMITED: 1.0,
    Offence.MALFORMED_REQUEST: 2.0,
    Offence.INVALID_DATA: 5.0,
    Offence.BAD_SIGNATURE: 5.0,
}


IDENTITIES_PER_NETWORK_BAN: Final = 3
"""Banned peer ids from one network (within the window) that ban the network itself."""


def weight(offence: Offence, policy: Escalation) -> float:
    """How many violations one offence counts for; low reputation fills the bucket."""
    if offence is Offence.BANNED_IDENTITY:
        return policy.threshold / IDENTITIES_PER_NETWORK_BAN
    return WEIGHTS.get(offence, float(policy.threshold))


@dataclass(frozen=True, slots=True)
class History:
    """What we remember about one offender: bucket level, bans so far, offences so far."""

    level: float = 0.0
    updated: float = 0.0  # monotonic time of the last offence
    bans: int = 0
    offences: int = 0


@dataclass(frozen=True, slots=True)
class BanDecision:
    seconds: float
    reason: Offence
    offences: int  # offences committed so far, this one included
    ban_number: int  # 1 for the first ban of this offender


class Verdict(NamedTuple):
    history: History
    ban: BanDecision | None


def ban_seconds(policy: Escalation, previous_bans: int) -> float:
    """Length of the next ban: geometric growth, capped (and overflow-safe)."""
    try:
        seconds = policy.first_ban_seconds * policy.backoff_factor**previous_bans
    except OverflowError:
        return policy.max_ban_seconds
    return min(seconds, policy.max_ban_seconds)


def escalate(history: History | None, offence: Offence, policy: Escalation, now: float) -> Verdict:
    """Pure: the offender's new history and, when the threshold is reached, a ban."""
    past = history or History(updated=now)
    drain = elapsed(now, past.updated) * policy.threshold / policy.window_seconds
    level = max(0.0, past.level - drain) + weight(offence, policy)
    offences = past.offences + 1
    if level < policy.threshold:
        return Verdict(History(level, now, past.bans, offences), None)
    ban = BanDecision(ban_seconds(policy, past.bans), offence, offences, past.bans + 1)
    return Verdict(History(0.0, now, past.bans + 1, offences), ban)


class Offenders:
    """Histories per offender key (a compact 64-bit key: `compact`) in a bounded LRU;
    `record` applies `escalate`."""

    __slots__ = ("_capacity", "_histories")

    def __init__(self, capacity: int = DEFAULT_OFFENDER_CAPACITY) -> None:
        if capacity < 1:
            raise ValueError("capacity must be positive")
        self._capacity = capacity
        self._histories: OrderedDict[int, History] = OrderedDict()  # compact key -> history

    def __len__(self) -> int:
        return len(self._histories)

    def get(self, key: str) -> History | None:
        return self._histories.get(compact.key(key))

    def record(
        self, key: str, offence: Offence, policy: Escalation, now: float
    ) -> BanDecision | None:
        histories, k = self._histories, compact.key(key)
        history = histories.pop(k, None)
        verdict = escalate(history, offence, policy, now)
        if history is None and len(histories) >= self._capacity:
            histories.popitem(last=False)
        histories[k] = verdict.history
        return verdict.ban
