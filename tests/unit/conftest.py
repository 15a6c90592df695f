"""Unit-test settings: hypothesis checks properties, never speed.

Its timing checks (the per-example deadline, the too-slow health check) fail
at random on a shared two-core machine under coverage tracing; speed goals
belong in `make bench`.
"""

from __future__ import annotations

from hypothesis import HealthCheck, settings

settings.register_profile("unit", deadline=None, suppress_health_check=[HealthCheck.too_slow])
settings.load_profile("unit")
