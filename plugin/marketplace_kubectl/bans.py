"""`kubectl marketplace ban`: entries added to and removed from a BanList the user names.

Pure. An entry is checked with the operator's own model (the same rules as the CRD's CEL),
so a bad flag fails before anything is sent. The manifest written for `--dry-run=client`
carries only what a user owns (apiVersion, kind, name, namespace, labels, annotations,
spec), ready to commit to a GitOps repository.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

import pydantic
from marketplace_operator.model.banlist import ALL_FLEETS, BanListEntry
from marketplace_operator.model.common import API_VERSION
from marketplace_operator.render import names

from marketplace_kubectl import output

KIND = "BanList"


class BanError(ValueError):
    """A ban request that cannot be honoured; nothing was changed."""


def entry(
    *,
    peer_id: str | None,
    cidr: str | None,
    reason: str,
    duration: str | None,
    expires_at: str | None,
    allow: bool = False,
) -> BanListEntry:
    """One validated entry from the command line's flags."""
    if cidr is not None and "/" not in cidr:  # one address: its own network, as the API wants
        cidr = f"{cidr}/{128 if ':' in cidr else 32}"
    raw: dict[str, Any] = {"peerId": peer_id, "cidr": cidr, "reason": reason}
    if duration:
        raw["duration"] = duration
    if expires_at:
        raw["expiresAt"] = expires_at
    if allow:
        raw["action"] = "allow"
    try:
        return BanListEntry.model_validate({k: v for k, v in raw.items() if v is not None})
    except pydantic.ValidationError as exc:
        problems = "; ".join(e["msg"].removeprefix("Value error, ") for e in exc.errors())
        raise BanError(f"invalid entry: {problems}") from None


def _wire(e: BanListEntry) -> dict[str, Any]:
    return e.model_dump(mode="json", by_alias=True, exclude_none=True, exclude_defaults=True)


def target_of(raw: Mapping[str, Any]) -> str:
    """`peer:<id>` or `cidr:<network>` of an entry as stored in the API."""
    return BanListEntry.model_validate(raw).target


def check_user_owned(banlist: Mapping[str, Any] | None) -> None:
    labels = ((banlist or {}).get("metadata") or {}).get("labels") or {}
    if labels.get("app.kubernetes.io/managed-by") == names.MANAGED_BY:
        name = banlist["metadata"]["name"] if banlist else "?"
        raise BanError(
            f"BanList {name} is written by the operator (automatic bans); name a list of your own"
        )


def manifest(
    name: str, namespace: str, existing: Mapping[str, Any] | None, *, fleet: str | None
) -> dict[str, Any]:
    """The user-owned part of a BanList: `existing` stripped of server fields, or a new one."""
    meta = (existing or {}).get("metadata") or {}
    spec = dict((existing or {}).get("spec") or {})
    if fleet is not None:
        if existing is not None and spec.get("fleet", ALL_FLEETS) != fleet:
            raise BanError(
                f"BanList {name} is for fleet {spec.get('fleet', ALL_FLEETS)!r}, not {fleet!r}"
            )
        spec["fleet"] = fleet
    spec.setdefault("fleet", ALL_FLEETS)
    spec["entries"] = list(spec.get("entries") or [])
    metadata: dict[str, Any] = {"name": name, "namespace": namespace}
    for key in ("labels", "annotations"):
        kept = {
            k: v
            for k, v in (meta.get(key) or {}).items()
            if k != "kubectl.kubernetes.io/last-applied-configuration"
        }
        if kept:
            metadata[key] = kept
    return {"apiVersion": API_VERSION, "kind": KIND, "metadata": metadata, "spec": spec}


def add(banlist: dict[str, Any], new: BanListEntry) -> dict[str, Any]:
    """`banlist` with `new` in place of any entry of the same target (else appended)."""
    out: list[Any] = []
    placed = False
    for e in banlist["spec"]["entries"]:
        if target_of(e) != new.target:
            out.append(e)
        elif not placed:
            out.append(_wire(new))
            placed = True
    if not placed:
        out.append(_wire(new))
    return {**banlist, "spec": {**banlist["spec"], "entries": out}}


def remove(banlist: dict[str, Any], target: str) -> dict[str, Any]:
    """`banlist` without the entries of `target`; BanError if it has none."""
    kept = [e for e in banlist["spec"]["entries"] if target_of(e) != target]
    if len(kept) == len(banlist["spec"]["entries"]):
        raise BanError(f"BanList {banlist['metadata']['name']} has no entry for {target}")
    return {**banlist, "spec": {**banlist["spec"], "entries": kept}}


def rows(banlists: Sequence[Mapping[str, Any]], now: datetime) -> list[list[str]]:
    """`ban list`: one row per entry, with its expiry resolved as the operator does."""
    out = []
    for bl in sorted(banlists, key=lambda b: str(b["metadata"]["name"])):
        created = output.parse_time(bl["metadata"].get("creationTimestamp")) or now
        spec = bl.get("spec") or {}
        for raw in spec.get("entries") or []:
            e = BanListEntry.model_validate(raw)
            expiry = e.expiry(created)
            if expiry is None:
                expires = "never"
            elif expiry <= now:
                expires = "expired"
            else:
                expires = "in " + output.human_duration((expiry - now).total_seconds())
            source = "user"
            if e.provenance is not None:
                source = f"{e.provenance.node_count} node(s)"
            out.append(
                [
                    str(bl["metadata"]["name"]),
                    str(spec.get("fleet", ALL_FLEETS)),
                    e.target,
                    e.action.value,
                    e.reason,
                    expires,
                    source,
                ]
            )
    return out


ROW_HEADERS = ("banlist", "fleet", "target", "action", "reason", "expires", "source")
