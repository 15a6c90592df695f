"""`marketplace-operator`: run the operator (kopf) with validated settings.

Flags override `MARKETPLACE_OPERATOR_*` environment variables. By default the operator
is standalone (no peering); `--peering` makes a second replica stand by (kopf's
KopfPeering/ClusterKopfPeering CRDs must be installed, see crds/kopf-peering.yaml).
"""

from __future__ import annotations

import argparse
import logging
import secrets
from typing import Any

import kopf
from prometheus_client import CollectorRegistry
from pydantic import ValidationError

from marketplace_operator import handlers, logs, memdump, watchjson
from marketplace_operator.settings import Settings


def _parse(argv: list[str] | None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(prog="marketplace-operator", description=__doc__)
    parser.add_argument("-n", "--namespace", action="append", dest="namespaces", help="watch it")
    parser.add_argument("-A", "--all-namespaces", action="store_true", default=None)
    parser.add_argument("--default-node-image")
    parser.add_argument(
        "--liveness", dest="liveness_endpoint", help="e.g. http://127.0.0.1:8080/healthz"
    )
    parser.add_argument("--metrics-port", type=int, help="0 disables the metrics endpoint")
    parser.add_argument("--metrics-address")
    parser.add_argument("--poll-interval", type=float, dest="poll_interval_seconds")
    parser.add_argument(
        "--peering", dest="standalone", action="store_false", default=None,
        help="stand by behind another replica (kopf peering) instead of running standalone",
    )  # fmt: skip
    parser.add_argument("--peering-name")
    parser.add_argument("--peering-priority", type=int)
    parser.add_argument("--peering-lifetime", type=int, dest="peering_lifetime_seconds")
    parser.add_argument("--log-level", choices=["DEBUG", "INFO", "WARNING", "ERROR"])
    args = vars(parser.parse_args(argv))
    return {k: v for k, v in args.items() if v is not None}


def main(argv: list[str] | None = None) -> int:
    try:
        settings = Settings(**_parse(argv))
    except ValidationError as exc:
        print(f"marketplace-operator: invalid configuration:\n{exc}")
        return 2
    logs.configure(settings.log_level)
    logging.getLogger("kopf.objects").setLevel(
        max(logging.WARNING, logging.getLevelName(settings.log_level))
    )  # one line per handler call is noise
    assert handlers.mnode  # importing the package registered the handlers
    memdump.install()
    watchjson.install()
    kopf.run(
        clusterwide=settings.all_namespaces,
        namespaces=[] if settings.all_namespaces else settings.watched_namespaces,
        standalone=settings.standalone,
        # a peering name makes kopf's peering mandatory: only when standing by for HA
        peering_name=None if settings.standalone else settings.peering_name,
        # replicas of equal priority would all pause: a random one unless configured
        priority=settings.peering_priority
        if settings.peering_priority is not None
        else secrets.randbelow(2**31),
        liveness_endpoint=settings.liveness_endpoint,
        memo=kopf.Memo(settings=settings, registry=CollectorRegistry()),
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
