"""Pydantic models of the operator's custom resources; `CRDS` lists every one `crdgen` renders."""

from __future__ import annotations

from marketplace_operator.model import banlist, fleet, mnode, ratelimitpolicy
from marketplace_operator.model.common import CrdInfo

CRDS: list[CrdInfo] = [mnode.CRD, banlist.CRD, ratelimitpolicy.CRD, fleet.CRD]
