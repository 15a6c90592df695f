"""Restart decisions: restartPolicy and the crash back-off (pure)."""

from __future__ import annotations

from datetime import timedelta


def should_restart(policy: str, exit_code: int) -> bool:
    """Whether a container that exited with `exit_code` runs again under `policy`."""
    if policy == "Always":
        return True
    if policy == "OnFailure":
        return exit_code != 0
    return False


def backoff_delay(crashes: int, *, initial: timedelta, cap: timedelta) -> timedelta:
    """Wait before the restart that follows the `crashes`-th consecutive exit.

    As a real kubelet (kuberuntime's doBackOff on client-go's flowcontrol.Backoff): the
    first exit after a clean start restarts at once, the second waits `initial` (10 s
    there), and each later one doubles it, up to `cap` (5 min).
    """
    if crashes <= 1:
        return timedelta(0)
    # Bound the exponent so the multiplication cannot overflow timedelta.
    exponent = min(crashes - 2, 32)
    delay: timedelta = initial * (2**exponent)
    return min(delay, cap)


def crashes_after_exit(previous: int, *, ran_for: timedelta, reset_after: timedelta) -> int:
    """The consecutive-crash count after an exit: a long, healthy run resets it."""
    return 1 if ran_for >= reset_after else previous + 1
