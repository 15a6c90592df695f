"""The operator's one admin-token cache: read once per version of the Secret, the token
before a change still tried during the overlap, a recreated fleet read afresh."""

from __future__ import annotations

import pytest
from marketplace_operator import errors
from marketplace_operator.admintoken import AdminTokens


def secret(uid: str, rv: str) -> dict[str, object]:
    return {"metadata": {"uid": uid, "resourceVersion": rv}}


class World:
    def __init__(self) -> None:
        self.token: str | None = "t1"
        self.reads = 0
        self.now = 0.0

    async def read(self, namespace: str, fleet: str) -> str | None:
        self.reads += 1
        return self.token


@pytest.fixture
def world() -> World:
    return World()


@pytest.fixture
def tokens(world: World) -> AdminTokens:
    return AdminTokens(world.read, overlap=60, clock=lambda: world.now)


async def test_read_once_per_version_of_the_secret(world: World, tokens: AdminTokens) -> None:
    assert await tokens.get("ns", "f", secret("u1", "1")) == "t1"
    assert await tokens.get("ns", "f", secret("u1", "1")) == "t1"
    assert world.reads == 1
    world.token = "t2"  # edited in place: same uid, new resourceVersion
    assert await tokens.get("ns", "f", secret("u1", "2")) == "t2"
    assert world.reads == 2


async def test_the_token_before_a_change_is_an_alternative_for_the_overlap(
    world: World, tokens: AdminTokens
) -> None:
    await tokens.get("ns", "f", secret("u1", "1"))
    assert tokens.alternatives("t1") == []
    world.token = "t2"
    await tokens.get("ns", "f", secret("u2", "9"))  # deleted and recreated
    assert tokens.alternatives("t2") == ["t1"]
    assert tokens.alternatives("t1") == ["t2"]  # a caller still holding the old one
    world.now += 61
    assert tokens.alternatives("t2") == []


async def test_a_missing_secret_is_not_found_and_forgetting_drops_the_fleet(
    world: World, tokens: AdminTokens
) -> None:
    with pytest.raises(errors.NotFound):
        await tokens.get("ns", "f", None)
    await tokens.get("ns", "f", secret("u1", "1"))
    world.token = None
    with pytest.raises(errors.NotFound):
        await tokens.get("ns", "f", secret("u1", "2"))
    tokens.forget("ns", "f")
    world.token = "t3"
    assert await tokens.get("ns", "f", secret("u1", "2")) == "t3"
    assert tokens.alternatives("t3") == []
