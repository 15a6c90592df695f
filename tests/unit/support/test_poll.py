"""tests/support/poll.py: a probe's `NotYet` keeps waiting and is what a timeout reports."""

from __future__ import annotations

import pytest

from tests.support.poll import NotYet, wait_for


def test_not_yet_keeps_waiting_and_its_words_are_in_the_timeout() -> None:
    seen = iter(range(1000))

    def probe() -> str | NotYet:
        return NotYet(f"2 of 3 ready (poll {next(seen)})")

    with pytest.raises(pytest.fail.Exception) as failed:
        wait_for(probe, timeout=0.05, interval=0.01, what="3 ready")
    message = str(failed.value)
    assert message.startswith("timed out after 0.05s waiting for 3 ready; last seen: 2 of 3 ready")
    assert "(poll 0)" not in message  # the last probe's words, not the first


def test_a_truthy_answer_ends_the_wait_with_it() -> None:
    answers = iter([NotYet("not yet"), NotYet("still not"), "done"])
    assert wait_for(lambda: next(answers), timeout=5, interval=0.001) == "done"
