"""The search index: the seed's semantics (against a brute-force filter), ranking, pages."""

from __future__ import annotations

import math

from hypothesis import given, settings
from hypothesis import strategies as st
from marketplace_node.model import PackageMeta, Query
from marketplace_node.search import SearchIndex, matches, rank

from tests.support.signed import package

WORDS = ["web", "framework", "http", "json", "Parser", "fast", "db", "sql-lite", "tool", "Web2"]


def no_reputation(_: str) -> float:
    return 0.0


def catalogue() -> st.SearchStrategy[list[tuple[PackageMeta, int]]]:
    meta = st.builds(
        lambda i, name, desc, tags, cat: package(
            f"{name}{i}",
            "1.0",
            description=" ".join(desc),
            tags=tuple(dict.fromkeys(tags)),
            category=cat,
        ),
        st.integers(0, 10_000),
        st.sampled_from(["alpha", "web", "Json", "x"]),
        st.lists(st.sampled_from(WORDS), max_size=5),
        st.lists(st.sampled_from(["cli", "Net", "db", "web"]), max_size=3),
        st.sampled_from(["tools", "libs"]),
    )
    return st.lists(
        st.tuples(meta, st.integers(0, 1_000)), max_size=25, unique_by=lambda p: p[0].id
    )


queries = st.builds(
    Query,
    keywords=st.lists(
        st.sampled_from(["web", "WEB", "son", "sql-l", "e", "fast db", "zz", "++"]), max_size=2
    ).map(tuple),
    tags=st.lists(st.sampled_from(["cli", "net", "DB"]), max_size=2).map(tuple),
    category=st.none() | st.sampled_from(["tools", "libs"]),
    min_downloads=st.none() | st.integers(0, 1_000),
    limit=st.just(200),
)


@settings(max_examples=200, deadline=None)
@given(catalogue(), queries)
def test_index_answers_exactly_the_seed_semantics(
    packages: list[tuple[PackageMeta, int]], query: Query
) -> None:
    index = SearchIndex()
    for meta, downloads in packages:
        index.upsert(meta, downloads)
    found = {r.id for r in index.search(query, no_reputation).results}
    assert found == {meta.id for meta, downloads in packages if matches(query, meta, downloads)}


@settings(max_examples=50, deadline=None)
@given(catalogue(), st.integers(1, 4))
def test_pages_cover_everything_once_in_rank_order(
    packages: list[tuple[PackageMeta, int]], limit: int
) -> None:
    index = SearchIndex()
    for meta, downloads in packages:
        index.upsert(meta, downloads)
    seen: list[str] = []
    cursor = None
    for _ in range(len(packages) + 2):
        page = index.search(Query(limit=limit, cursor=cursor), no_reputation)
        seen += [r.id for r in page.results]
        cursor = page.next_cursor
        if cursor is None:
            break
    full = index.search(Query(limit=200), no_reputation)
    assert seen == [r.id for r in full.results]
    assert len(seen) == len(packages)


def test_remove_forgets_every_posting() -> None:
    index = SearchIndex()
    meta = package("webby", description="fast json", tags=("cli",))
    index.upsert(meta)
    index.remove(meta.id)
    assert index.search(Query(keywords=("json",)), no_reputation).results == ()
    assert index.search(Query(tags=("cli",)), no_reputation).results == ()
    assert len(index) == 0


def test_name_hits_outrank_description_hits_and_popularity_breaks_near_ties() -> None:
    index = SearchIndex()
    in_name = package("json", description="x")
    in_desc = package("other", description="json")
    index.upsert(in_name, 0)
    index.upsert(in_desc, 10)
    results = index.search(Query(keywords=("json",)), no_reputation).results
    assert [r.id for r in results] == [in_name.id, in_desc.id]
    assert results[0].score == 3.0
    assert results[1].score == 1.0 + 0.25 * math.log1p(10)


def test_ranking_is_total_and_deterministic_with_nan_and_ties() -> None:
    scored = [
        (math.nan, "b"),
        (1.0, "d"),
        (math.inf, "e"),
        (1.0, "a"),
        (-math.inf, "c"),
        (math.nan, "a0"),
    ]
    for order in (scored, list(reversed(scored)), sorted(scored, key=lambda p: p[1])):
        # finite scores first (descending); NaN and ±inf all rank lowest, by id
        assert [p[1] for p in rank(order)] == ["a", "d", "a0", "b", "c", "e"]


def test_nan_reputation_ranks_last_and_reports_no_score() -> None:
    index = SearchIndex()
    good, poisoned = package("good"), package("bad")
    index.upsert(good)
    index.upsert(poisoned)
    results = index.search(Query(), lambda pid: math.nan if pid == poisoned.id else 0.0).results
    assert [r.id for r in results] == [good.id, poisoned.id]
    assert results[1].score is None
