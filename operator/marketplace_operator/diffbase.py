"""kopf's diff-base and progress storages, without the copies they make for nothing.

kopf builds the "essence" of an object (spec and the like, labels, annotations) on
every watch event of every resource it watches, by deep-copying the whole body and then
deleting `metadata` and `status`, and deep-copies it again to clear its progress marks.
For a MarketplaceNode the discarded part (managedFields, conditions) is most of the
body: while twenty nodes start, those copies were a sixth of the operator's CPU. For a
pod, whose spec is its biggest part, the two copies were half of what kopf spent on
each of a rolling fleet's ~17 pod events per node (issue 15), and no handler reads it:
the essence only tells change handlers and daemons what changed, and pods, like the
other children, have neither.

So these storages give kopf the same essence (unit-tested against kopf's own) built
from a body without the parts it throws away, an empty one for kinds whose groups no
change handler or daemon selects (`essential_groups`), and clear progress marks from
the fresh essence kopf hands over instead of from a deep copy of it.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Mapping
from typing import Any, cast

import kopf

_KEPT_METADATA = ("labels", "annotations")
ANY_GROUP = "*"  # a selector without a group (e.g. "pods"): it may select any kind


def slim(body: Mapping[str, Any]) -> dict[str, Any]:
    """What `DiffBaseStorage.build` reads of `body` without extra fields (pure): all but
    `metadata` and `status`, plus the labels and annotations."""
    out = {k: v for k, v in body.items() if k not in ("metadata", "status")}
    meta = body.get("metadata") or {}
    out["metadata"] = {k: meta[k] for k in _KEPT_METADATA if k in meta}
    return out


def group_of(body: Mapping[str, Any]) -> str:
    """The API group of `body` ("" for the core group: `apiVersion: v1`)."""
    api_version = str(body.get("apiVersion") or "")
    return api_version.rpartition("/")[0]


def essential_groups(registry: kopf.OperatorRegistry) -> frozenset[str]:
    """The API groups of the resources kopf needs essences of: those a change handler
    or a daemon selects (`ANY_GROUP` when a selector names no group)."""
    handlers = [*registry._changing.get_all_handlers(), *registry._spawning.get_all_handlers()]
    return frozenset(
        ANY_GROUP if h.selector is None or h.selector.group is None else h.selector.group
        for h in handlers
    )


def diff_read(registry: kopf.OperatorRegistry) -> bool:
    """Whether any change handler reads a diff: one for creation, update, resume or a
    field. Deletion is found by the deletion timestamp; daemons and timers read it
    only to reset a timer's idle wait (`idle=`)."""
    return any(
        h.reason is not kopf.Reason.DELETE or h.field is not None
        for h in registry._changing.get_all_handlers()
    ) or any(getattr(h, "idle", None) is not None for h in registry._spawning.get_all_handlers())


class LeanAnnotationsDiffBaseStorage(kopf.AnnotationsDiffBaseStorage):
    def __init__(
        self, *, groups: Collection[str] = (ANY_GROUP,), stored: bool = True, **kw: Any
    ) -> None:
        """`groups`: those whose objects get an essence (`essential_groups`); `stored`:
        whether a diff base is kept at all (`diff_read`). Unstored, each body is its own
        diff base: kopf sees no change (a resume when it lists), so it writes nothing."""
        super().__init__(**kw)
        self._groups = frozenset(groups)
        self._stored = stored

    def fetch(self, *, body: kopf.Body) -> kopf.BodyEssence | None:
        if not self._stored:
            return self.build(body=body)
        return super().fetch(body=body)

    def store(self, *, body: kopf.Body, patch: kopf.Patch, essence: kopf.BodyEssence) -> None:
        if self._stored:
            super().store(body=body, patch=patch, essence=essence)

    def build(
        self,
        *,
        body: kopf.Body,
        extra_fields: Iterable[Any] | None = None,
    ) -> kopf.BodyEssence:
        fields = list(extra_fields or ())
        if fields:  # a handler watching a field of status or metadata: kopf's own way
            return super().build(body=body, extra_fields=fields)
        if ANY_GROUP not in self._groups and group_of(body) not in self._groups:
            return cast("kopf.BodyEssence", {})  # no change handler or daemon reads it
        return super().build(body=kopf.Body(cast("kopf.RawBody", slim(body))))


class LeanAnnotationsProgressStorage(kopf.AnnotationsProgressStorage):
    def clear(self, *, essence: kopf.BodyEssence) -> kopf.BodyEssence:
        """kopf's `clear` without its deep copy: kopf calls it only on essences it has just
        made (built from the body, or parsed from the last-handled annotation), and only
        the annotations are changed, which are copied here."""
        cleared = cast("dict[str, Any]", dict(essence))
        meta = cleared.get("metadata")
        if isinstance(meta, Mapping):
            meta = cleared["metadata"] = dict(meta)
            if isinstance(meta.get("annotations"), Mapping):
                meta["annotations"] = dict(meta["annotations"])
        annotations = (cleared.get("metadata") or {}).get("annotations") or {}
        keys = {k for k in annotations if self.prefix and k.startswith(f"{self.prefix}/")}
        self.remove_annotations(cast("kopf.BodyEssence", cleared), keys)
        self.remove_empty_stanzas(cast("kopf.BodyEssence", cleared))
        return cast("kopf.BodyEssence", cleared)
