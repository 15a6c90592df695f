"""The per-fleet mailbox turns bursts of changes into a bounded number of pushes."""

from __future__ import annotations

from itertools import pairwise

from hypothesis import given
from hypothesis import strategies as st
from marketplace_operator.policy.coalesce import Mailbox


def test_a_lone_mark_is_due_after_the_gathering_delay() -> None:
    box: Mailbox[str] = Mailbox(quiet=0.25, min_interval=1.0)
    box.mark("a", 1.0)
    assert box.take_due(1.125) == []
    assert box.next_due() == 1.25
    assert box.take_due(1.25) == ["a"]
    assert box.next_due() is None


def test_later_marks_do_not_postpone_an_earlier_one() -> None:
    box: Mailbox[str] = Mailbox(quiet=0.25, min_interval=1.0)
    box.mark("a", 0.0)
    box.mark("a", 0.125)
    box.mark("a", 0.25)
    assert box.take_due(0.25) == ["a"]


def test_rounds_of_one_key_are_at_least_min_interval_apart() -> None:
    box: Mailbox[str] = Mailbox(quiet=0.25, min_interval=1.0)
    box.mark("a", 0.0)
    assert box.take_due(0.25) == ["a"]
    box.done("a")
    box.mark("a", 0.5)
    assert box.next_due() == 1.25
    assert box.take_due(1.0) == []
    assert box.take_due(1.25) == ["a"]


def test_a_busy_key_is_not_due_until_done_and_keeps_new_marks() -> None:
    box: Mailbox[str] = Mailbox(quiet=0.25, min_interval=1.0)
    box.mark("a", 0.0)
    assert box.take_due(0.25) == ["a"]
    box.mark("a", 0.5)
    assert box.take_due(5.0) == []
    assert box.next_due() is None
    box.done("a")
    assert box.take_due(5.0) == ["a"]


def test_keys_are_independent_and_forgettable() -> None:
    box: Mailbox[str] = Mailbox(quiet=0.25, min_interval=1.0)
    box.mark("a", 0.0)
    box.mark("b", 0.5)
    assert box.take_due(0.5) == ["a"]
    assert box.pending() == {"b"}
    assert box.take_due(0.75) == ["b"]
    box.forget("a")
    box.mark("a", 0.75)
    assert box.take_due(1.0) == ["a"]  # no min_interval carried over from before forget


@given(
    marks=st.lists(st.floats(min_value=0, max_value=2.0), min_size=1, max_size=100),
    handling=st.floats(min_value=0.0, max_value=0.3),
)
def test_a_burst_costs_a_bounded_number_of_pushes(marks: list[float], handling: float) -> None:
    """Simulate the worker on a 1 ms tick: marks arrive, due keys are handled for a while."""
    quiet, min_interval, step = 0.005, 0.1, 0.001
    box: Mailbox[str] = Mailbox(quiet=quiet, min_interval=min_interval)
    marks = sorted(marks)
    starts: list[float] = []
    busy_until: float | None = None
    t, i = 0.0, 0
    while i < len(marks) or box.pending() or busy_until is not None:
        while i < len(marks) and marks[i] <= t:
            box.mark("fleet", marks[i])
            i += 1
        if busy_until is not None and t >= busy_until:
            box.done("fleet")
            busy_until = None
        if busy_until is None and box.take_due(t):
            starts.append(t)
            busy_until = t + handling
        t += step
        assert t < 10, "the mailbox never drained"
    assert len(starts) <= (marks[-1] - marks[0]) / min_interval + 2
    assert len(starts) <= len(marks)
    assert all(b - a >= min_interval - 1e-9 for a, b in pairwise(starts))
    # The last change is always handled, by a push that starts after it.
    assert starts[-1] >= marks[-1]
