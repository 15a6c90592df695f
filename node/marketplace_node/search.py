"""The search index and ranking (pure, no I/O): the seed's query semantics answered from an index.

Index: words (maximal runs of `\\w`, lower-cased) of each package's name,
description and tags → package ids; a trigram index over the *vocabulary* of
words (not over packages) finds the words that contain a keyword; lower-cased
tag → ids; category → ids. A keyword matches a package when it is a substring
of its name, description or a tag (the seed's semantics). Each word-piece of a
keyword must be a substring of one of the package's words, so the index gives
a small candidate set that is then checked exactly.

Score (higher is better)::

    score = relevance + 0.25 * ln(1 + downloads) + 1.0 * reputation

relevance sums, per matching keyword, 3 for a name hit, 2 for a tag hit, 1 for
a description hit (the best field counts); reputation is the best provider's
reputation in [0, 1]. Order: score descending, then package id ascending; a
non-finite score (NaN, ±inf) ranks as the lowest possible, so the order is
total and deterministic. Pagination is by keyset: the cursor is the sort key of
the last result returned.
"""

from __future__ import annotations

import base64
import heapq
import json
import math
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import TypeVar

from marketplace_protocol.errors import InvalidInput

from marketplace_node.model import PackageMeta, Query, SearchPage, SearchResult

WORD_RE = re.compile(r"\w+")
NAME_WEIGHT, TAG_WEIGHT, DESCRIPTION_WEIGHT = 3.0, 2.0, 1.0
POPULARITY_WEIGHT, REPUTATION_WEIGHT = 0.25, 1.0

K = TypeVar("K")
SortKey = tuple[float, str]  # (-score, package id), ascending


def finite_or_lowest(score: float) -> float:
    """NaN and ±inf rank below every real score."""
    return score if math.isfinite(score) else -math.inf


def sort_key(score: float, package_id: str) -> SortKey:
    return (-finite_or_lowest(score), package_id)


def rank(scored: Iterable[tuple[float, str]]) -> list[tuple[float, str]]:
    """`(score, id)` pairs in result order: total, NaN-safe, ties broken by id."""
    return sorted(scored, key=lambda pair: sort_key(*pair))


def encode_cursor(key: SortKey) -> str:
    raw = json.dumps([key[0].hex(), key[1]]).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(cursor: str) -> SortKey:
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        neg_score, package_id = json.loads(raw)
        return (float.fromhex(neg_score), str(package_id))
    except (ValueError, TypeError) as exc:
        raise InvalidInput("malformed cursor") from exc


def matches(query: Query, meta: PackageMeta, downloads: int) -> bool:
    """The seed's `matches_query` for one package (used for live subscriptions)."""
    if query.category is not None and meta.category != query.category:
        return False
    if downloads < (query.min_downloads or 0):
        return False
    tags = [t.lower() for t in meta.tags]
    if any(t.lower() not in tags for t in query.tags):
        return False
    if not query.keywords:
        return True
    fields = [meta.name.lower(), meta.description.lower(), *tags]
    return any(kw.lower() in field for kw in query.keywords for field in fields)


def _trigrams(word: str) -> set[str]:
    return {word[i : i + 3] for i in range(len(word) - 2)}


@dataclass(slots=True)
class _Doc:
    meta: PackageMeta
    downloads: int
    name: str
    description: str
    tags: tuple[str, ...]
    words: frozenset[str]

    def relevance(self, keywords: tuple[str, ...]) -> float:
        total = 0.0
        for kw in keywords:
            if kw in self.name:
                total += NAME_WEIGHT
            elif any(kw in tag for tag in self.tags):
                total += TAG_WEIGHT
            elif kw in self.description:
                total += DESCRIPTION_WEIGHT
        return total


class SearchIndex:
    """Incrementally maintained; `upsert`/`remove` cost O(words of one package)."""

    def __init__(self) -> None:
        self._docs: dict[str, _Doc] = {}
        self._word_docs: dict[str, set[str]] = {}
        self._gram_words: dict[str, set[str]] = {}
        self._tag_docs: dict[str, set[str]] = {}
        self._category_docs: dict[str, set[str]] = {}

    def __len__(self) -> int:
        return len(self._docs)

    def __contains__(self, package_id: object) -> bool:
        return package_id in self._docs

    def ids(self) -> list[str]:
        return sorted(self._docs)

    def get(self, package_id: str) -> PackageMeta | None:
        doc = self._docs.get(package_id)
        return doc.meta if doc else None

    def downloads(self, package_id: str) -> int:
        doc = self._docs.get(package_id)
        return doc.downloads if doc else 0

    def upsert(self, meta: PackageMeta, downloads: int = 0) -> None:
        pid = meta.id
        if pid in self._docs:
            self.remove(pid)
        name, description = meta.name.lower(), meta.description.lower()
        tags = tuple(t.lower() for t in meta.tags)
        words = frozenset(WORD_RE.findall(" ".join((name, description, *tags))))
        self._docs[pid] = _Doc(meta, downloads, name, description, tags, words)
        for word in words:
            docs = self._word_docs.get(word)
            if docs is None:
                docs = self._word_docs[word] = set()
                for gram in _trigrams(word):
                    self._gram_words.setdefault(gram, set()).add(word)
            docs.add(pid)
        for tag in set(tags):
            self._tag_docs.setdefault(tag, set()).add(pid)
        self._category_docs.setdefault(meta.category, set()).add(pid)

    def set_downloads(self, package_id: str, downloads: int) -> None:
        doc = self._docs.get(package_id)
        if doc is not None:
            doc.downloads = downloads

    def remove(self, package_id: str) -> None:
        doc = self._docs.pop(package_id, None)
        if doc is None:
            return
        for word in doc.words:
            docs = self._word_docs[word]
            docs.discard(package_id)
            if not docs:
                del self._word_docs[word]
                for gram in _trigrams(word):
                    self._gram_words[gram].discard(word)
                    if not self._gram_words[gram]:
                        del self._gram_words[gram]
        for tag in set(doc.tags):
            _discard(self._tag_docs, tag, package_id)
        _discard(self._category_docs, doc.meta.category, package_id)

    def _words_containing(self, piece: str) -> Iterable[str]:
        grams = _trigrams(piece)
        if not grams:
            return [w for w in self._word_docs if piece in w]
        pools = sorted((self._gram_words.get(g, set()) for g in grams), key=len)
        return [w for w in pools[0].intersection(*pools[1:]) if piece in w]

    def _keyword_candidates(self, keyword: str) -> set[str] | None:
        pieces = WORD_RE.findall(keyword)
        if not pieces:
            return None  # no word characters: only an exact scan can answer
        piece = max(pieces, key=len)
        found: set[str] = set()
        for word in self._words_containing(piece):
            found |= self._word_docs[word]
        return found

    def _candidates(self, query: Query, keywords: tuple[str, ...]) -> Iterable[str]:
        constraints: list[set[str]] = []
        for tag in query.tags:
            constraints.append(self._tag_docs.get(tag.lower(), set()))
        if query.category is not None:
            constraints.append(self._category_docs.get(query.category, set()))
        if keywords:
            union: set[str] = set()
            for kw in keywords:
                found = self._keyword_candidates(kw)
                if found is None:
                    union = set(self._docs)
                    break
                union |= found
            constraints.append(union)
        if not constraints:
            return self._docs.keys()
        constraints.sort(key=len)
        return constraints[0].intersection(*constraints[1:])

    def search(self, query: Query, reputation: Callable[[str], float]) -> SearchPage:
        keywords = tuple(kw.lower() for kw in query.keywords)
        after = decode_cursor(query.cursor) if query.cursor else None
        min_downloads = query.min_downloads or 0
        keyed: list[tuple[SortKey, float]] = []
        for pid in self._candidates(query, keywords):
            doc = self._docs[pid]
            if doc.downloads < min_downloads:
                continue
            relevance = doc.relevance(keywords) if keywords else 0.0
            if keywords and relevance == 0.0:
                continue
            score = (
                relevance
                + POPULARITY_WEIGHT * math.log1p(doc.downloads)
                + REPUTATION_WEIGHT * reputation(pid)
            )
            key = sort_key(score, pid)
            if after is None or key > after:
                keyed.append((key, score))
        top = heapq.nsmallest(query.limit + 1, keyed)
        page = top[: query.limit]
        results = tuple(
            SearchResult(
                id=key[1],
                package=self._docs[key[1]].meta,
                author=self._docs[key[1]].meta.publisher,
                signed_by=self._docs[key[1]].meta.signed_by,
                downloads=self._docs[key[1]].downloads,
                score=score if math.isfinite(score) else None,
                providers=0,
            )
            for key, score in page
        )
        next_cursor = encode_cursor(page[-1][0]) if len(top) > query.limit else None
        return SearchPage(results=results, next_cursor=next_cursor)


def _discard(index: dict[K, set[str]], key: K, package_id: str) -> None:
    members = index.get(key)
    if members is not None:
        members.discard(package_id)
        if not members:
            del index[key]
