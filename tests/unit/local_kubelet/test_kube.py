"""Watch events of any size: a ConfigMap with 1 MB of binaryData is one JSON line of ~1.4 MB."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import cast

import aiohttp
import pytest
from local_kubelet.kube import KubeError, _lines, watch_timeout


class Chunks:
    """The `iter_any` side of an aiohttp StreamReader, fed fixed chunks."""

    def __init__(self, *chunks: bytes) -> None:
        self._chunks = chunks

    async def iter_any(self) -> AsyncIterator[bytes]:
        for chunk in self._chunks:
            await asyncio.sleep(0)
            yield chunk


async def lines(*chunks: bytes, limit: int = 1 << 30) -> list[bytes]:
    stream = cast("aiohttp.StreamReader", Chunks(*chunks))
    return [line async for line in _lines(stream, limit)]


async def test_lines_longer_than_aiohttps_readline_limit_arrive_whole() -> None:
    big = b'{"type":"ADDED","object":{"binaryData":{"k":"' + b"A" * 1_400_000 + b'"}}}\n'
    small = b'{"type":"BOOKMARK"}\n'
    chunked = [big[i : i + 65_536] for i in range(0, len(big), 65_536)]
    assert await lines(small[:5], small[5:] + chunked[0], *chunked[1:], small) == [
        small,
        big,
        small,
    ]


async def test_several_events_in_one_chunk_and_a_last_line_without_newline() -> None:
    assert await lines(b"a\nb\nc") == [b"a\n", b"b\n", b"c"]
    assert await lines() == []


async def test_an_event_beyond_the_limit_is_a_kube_error_the_informer_retries() -> None:
    with pytest.raises(KubeError, match="larger than 10 bytes"):
        await lines(b"x" * 6, b"y" * 6, limit=10)


def test_watches_last_five_to_ten_minutes_at_random_as_client_gos() -> None:
    """A kubelet renews each of its watches at client-go's pace, spread out: renewed every
    minute together, 1,000 pods' Secrets were the API server's busiest request."""
    timeouts = {watch_timeout() for _ in range(200)}
    assert min(timeouts) >= 300
    assert max(timeouts) <= 600
    assert len(timeouts) > 50  # spread, not one renewal time for all
