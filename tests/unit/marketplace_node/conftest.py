"""Every event loop in these tests runs in asyncio debug mode (slow callbacks, unawaited
coroutines and non-threadsafe calls are reported), on top of warnings-as-errors."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest


@pytest.fixture(autouse=True)
async def _asyncio_debug() -> AsyncIterator[None]:
    loop = asyncio.get_running_loop()
    loop.set_debug(True)
    yield
    loop.set_debug(False)
