"""`kubectl marketplace`: the verbs kubectl lacks for a marketplace fleet.

kubectl runs any `kubectl-marketplace` on PATH for `kubectl marketplace ...` and passes
every argument through, so the plugin reads kubectl's global flags itself
(`--kubeconfig`, `--context`, `-n/--namespace`) and prints as kubectl does (`-o
json|yaml|wide`). Exit codes: 0 done; 1 the cluster refused or the thing is not there
(or a rollout failed, paused or timed out under `rollout status`); 2 bad usage.
"""

from __future__ import annotations

import argparse
import ssl
import sys
import time
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import yaml
from marketplace_node import authors
from marketplace_operator import errors
from marketplace_operator.model.banlist import parse_duration
from marketplace_operator.model.common import GROUP, rfc3339
from marketplace_operator.policy.versioning import current_version
from marketplace_operator.render.names import FLEET_LABEL, policy_configmap_name

from marketplace_kubectl import api as kube
from marketplace_kubectl import bans, nodeaccess, output, report, rollout, status, why

EXIT_OK = 0
EXIT_ERROR = 1
EXIT_USAGE = 2
POLL_SECONDS = 1.0


class Failed(Exception):
    """A command that ran but did not succeed (exit 1), with kubectl's `error: ` line."""


# --- arguments ---------------------------------------------------------------------------


def _globals(parser: argparse.ArgumentParser, *, top: bool) -> None:
    """kubectl's global flags; on sub-commands they default to 'not given' so that a flag
    before the verb (`kubectl marketplace -n x status`) is not overwritten."""
    d: Any = None if top else argparse.SUPPRESS
    parser.add_argument("--kubeconfig", default=d, help="path to the kubeconfig file")
    parser.add_argument("--context", default=d, help="the kubeconfig context to use")
    parser.add_argument("-n", "--namespace", default=d, help="the namespace (default: context's)")


def _output(parser: argparse.ArgumentParser, choices: Sequence[str]) -> None:
    parser.add_argument("-o", "--output", choices=choices, default=None, help="output format")


def _target(parser: argparse.ArgumentParser) -> None:
    group = parser.add_mutually_exclusive_group(required=True)
    group.add_argument("--peer", dest="peer_id", help="a peer id")
    group.add_argument("--cidr", help="a network, e.g. 203.0.113.0/24")


def _verb(sub: Any, name: str, text: str) -> argparse.ArgumentParser:
    p: argparse.ArgumentParser = sub.add_parser(name, help=text, description=text)
    _globals(p, top=False)
    return p


def _ban_verbs(ban: argparse.ArgumentParser) -> None:
    ban_verbs = ban.add_subparsers(dest="ban_verb", required=True, metavar="COMMAND")
    for name, text in (("add", "ban (or --allow) a peer or network"), ("remove", "drop entries")):
        p = _verb(ban_verbs, name, f"{text} in the BanList NAME")
        p.add_argument("name", help="the BanList (created by add if missing)")
        _target(p)
        if name == "add":
            p.add_argument("--fleet", help='fleet of a new BanList (default "*": every fleet)')
            p.add_argument("--reason", default="", help="why; shown to operators")
            until = p.add_mutually_exclusive_group()
            until.add_argument("--duration", help="e.g. 24h (from the BanList's creation)")
            until.add_argument("--expires-at", help="RFC 3339 time the entry stops applying")
            p.add_argument("--allow", action="store_true", help="lift bans of the target")
        p.add_argument(
            "--dry-run",
            choices=("none", "client"),
            default="none",
            help="client: print the resulting BanList instead of applying it (GitOps)",
        )
        p.add_argument("-f", "--filename", type=Path, help="start from this manifest, not the API")
        _output(p, ("json", "yaml"))
    p = _verb(ban_verbs, "list", "entries of one BanList or of all in the namespace")
    p.add_argument("name", nargs="?")
    _output(p, ("json", "yaml"))


def _rollout_verbs(ro: argparse.ArgumentParser) -> None:
    ro_verbs = ro.add_subparsers(dest="rollout_verb", required=True, metavar="COMMAND")
    for name, text in (
        ("restart", "replace every node's pod, one step at a time"),
        ("status", "watch the rollout until it completes"),
        ("pause", "stop after the current step, keeping the plan"),
        ("resume", "continue a paused rollout"),
    ):
        p = _verb(ro_verbs, name, text)
        p.add_argument("fleet")
        if name == "status":
            p.add_argument(
                "-w", "--watch", default="true", choices=("true", "false"), help="wait for it"
            )
            p.add_argument("--timeout", default="10m", help="give up after this (e.g. 5m)")


def parser() -> argparse.ArgumentParser:
    top = argparse.ArgumentParser(prog="kubectl marketplace", description=__doc__)
    _globals(top, top=True)
    verbs = top.add_subparsers(dest="verb", required=True, metavar="COMMAND")

    p = _verb(verbs, "status", "nodes, phase, peers, policy version and lag, rollout step")
    p.add_argument("fleet", nargs="?", help="only this fleet")
    _output(p, ("wide", "json", "yaml"))

    _ban_verbs(verbs.add_parser("ban", help="add, list or remove entries of a BanList"))
    _rollout_verbs(verbs.add_parser("rollout", help="restart, watch, pause or resume a rollout"))
    p = _verb(verbs, "why", "explain what holds a node (NAME) or a fleet (fleet/NAME) back")
    p.add_argument("name", help="a MarketplaceNode, or fleet/NAME for a fleet's rollout")

    p = _verb(verbs, "report", "write a support bundle (tar.gz) with secrets redacted")
    p.add_argument("--output-file", "-f", type=Path, help="where (default: ./marketplace-…)")
    p.add_argument("--operator-namespace", default="marketplace-system")
    p.add_argument("--tail", type=int, default=5000, help="log lines per container")

    for name, text in (("search", "search the catalogue"), ("publish", "publish a file")):
        p = _verb(verbs, name, f"{text} through a node's API (via the API server's pod proxy)")
        p.add_argument("--node", help="the MarketplaceNode to ask (default: a Ready one)")
        p.add_argument("--fleet", help="pick a Ready node of this fleet")
        p.add_argument("--tag", action="append", default=[])
        if name == "search":
            p.add_argument("keywords", nargs="*")
            p.add_argument("--category")
            p.add_argument("--limit", type=int)
            _output(p, ("json", "yaml"))
        else:
            p.add_argument("file", type=Path)
            p.add_argument("--name", required=True)
            p.add_argument("--version", required=True)
            p.add_argument("--description", default="")
            p.add_argument("--category", default="misc")
            p.add_argument("--key-file", type=Path, help="your author key (docs/packages.md)")
            _output(p, ("json", "yaml"))
    return top


# --- commands ----------------------------------------------------------------------------


def _now() -> datetime:
    return datetime.now(UTC)


def _policy_versions(cli: kube.Api, fleets: set[str]) -> dict[str, int | None]:
    return {f: current_version(cli.get(kube.CONFIGMAPS, policy_configmap_name(f))) for f in fleets}


def cmd_status(cli: kube.Api, args: argparse.Namespace) -> str:
    mnodes = cli.list(kube.MNODES)
    fleet_objects = cli.list(kube.FLEETS)
    names = {status.fleet_of(m) for m in mnodes}
    views = status.fleets(
        mnodes, fleet_objects, _policy_versions(cli, names), _now(), only=args.fleet
    )
    if args.fleet and not any(v.nodes for v in views):
        raise Failed(f'no MarketplaceNodes of fleet "{args.fleet}" in namespace {cli.namespace}')
    if args.output in ("json", "yaml"):
        return output.dump(status.as_data(views), args.output)
    if not views:
        return f"No MarketplaceNodes found in {cli.namespace} namespace.\n"
    return status.render_table(views, wide=args.output == "wide") + status.render_summary(views)


def _banlist_base(cli: kube.Api, args: argparse.Namespace) -> dict[str, Any] | None:
    if args.filename is not None:
        loaded = yaml.safe_load(args.filename.read_text())
        if not isinstance(loaded, dict) or loaded.get("kind") != bans.KIND:
            raise Failed(f"{args.filename} is not a BanList manifest")
        return loaded
    return cli.get(kube.BANLISTS, args.name)


def cmd_ban(cli: kube.Api, args: argparse.Namespace) -> str:
    if args.ban_verb == "list":
        return _ban_list(cli, args)
    existing = _banlist_base(cli, args)
    bans.check_user_owned(existing)
    if args.ban_verb == "add":
        entry = bans.entry(
            peer_id=args.peer_id,
            cidr=args.cidr,
            reason=args.reason,
            duration=args.duration,
            expires_at=args.expires_at,
            allow=args.allow,
        )
        base = bans.manifest(args.name, cli.namespace, existing, fleet=args.fleet)
        wanted = bans.add(base, entry)
    else:
        if existing is None:
            raise Failed(f'banlists.{GROUP} "{args.name}" not found')
        base = bans.manifest(args.name, cli.namespace, existing, fleet=None)
        target = bans.entry(
            peer_id=args.peer_id, cidr=args.cidr, reason="", duration=None, expires_at=None
        ).target
        wanted = bans.remove(base, target)
    if args.dry_run == "client":
        return output.dump(wanted, args.output or "yaml")
    if existing is None:
        result = cli.create(kube.BANLISTS, wanted)
        verb = "created"
    else:
        # resourceVersion: a concurrent writer makes this fail (409) instead of being lost
        version = (existing.get("metadata") or {}).get("resourceVersion")
        result = cli.patch(
            kube.BANLISTS,
            args.name,
            {"metadata": {"resourceVersion": version}, "spec": wanted["spec"]},
        )
        verb = "configured"
    if args.output:
        return output.dump(result, args.output)
    return f"banlist.{GROUP}/{args.name} {verb}\n"


def _ban_list(cli: kube.Api, args: argparse.Namespace) -> str:
    if args.name:
        one = cli.get(kube.BANLISTS, args.name)
        if one is None:
            raise Failed(f'banlists.{GROUP} "{args.name}" not found')
        found = [one]
    else:
        found = cli.list(kube.BANLISTS)
    rows = bans.rows(found, _now())
    if args.output:
        keys = [h.replace("banlist", "banList") for h in bans.ROW_HEADERS]
        return output.dump([dict(zip(keys, r, strict=True)) for r in rows], args.output)
    if not rows:
        return f"No BanList entries found in {cli.namespace} namespace.\n"
    return output.table(bans.ROW_HEADERS, rows)


def _fleet_members(cli: kube.Api, fleet: str) -> list[dict[str, Any]]:
    return [m for m in cli.list(kube.MNODES) if status.fleet_of(m) == fleet]


def _progress(cli: kube.Api, fleet: str) -> rollout.Progress:
    members = _fleet_members(cli, fleet)
    pods = {p["metadata"]["name"]: p for p in cli.list(kube.PODS, labels={FLEET_LABEL: fleet})}
    by_mnode = {
        m["metadata"]["name"]: pods.get(str((m.get("status") or {}).get("podName") or ""))
        or pods.get(m["metadata"]["name"])
        for m in members
    }
    present = {k: v for k, v in by_mnode.items() if v is not None}
    return rollout.progress(cli.get(kube.FLEETS, fleet), members, present)


def cmd_rollout(cli: kube.Api, args: argparse.Namespace, out: Callable[[str], None]) -> int:
    fleet = args.fleet
    ref = f"marketplacefleet.{GROUP}/{fleet}"
    if args.rollout_verb == "restart":
        members = _fleet_members(cli, fleet)
        if not members:
            raise Failed(f'no MarketplaceNodes of fleet "{fleet}" in namespace {cli.namespace}')
        patch = rollout.restart_patch(rfc3339(_now()))
        for m in members:
            cli.patch(kube.MNODES, m["metadata"]["name"], patch)
        out(f"{ref} restarted ({len(members)} nodes)\n")
        return EXIT_OK
    if args.rollout_verb in ("pause", "resume"):
        if cli.get(kube.FLEETS, fleet) is None:
            raise Failed(f'marketplacefleets.{GROUP} "{fleet}" not found')
        cli.patch(kube.FLEETS, fleet, rollout.pause_patch(args.rollout_verb == "pause"))
        out(f"{ref} {'paused' if args.rollout_verb == 'pause' else 'resumed'}\n")
        return EXIT_OK
    try:
        deadline = time.monotonic() + parse_duration(args.timeout).total_seconds()
    except ValueError as exc:
        raise Failed(f"--timeout: {exc}") from None
    last = ""
    while True:
        progress = _progress(cli, fleet)
        if progress.message != last:
            out(progress.message + "\n")
            last = progress.message
        if progress.state is rollout.State.COMPLETE:
            return EXIT_OK
        if args.watch == "false":
            return EXIT_ERROR if progress.state is rollout.State.DEGRADED else EXIT_OK
        if progress.finished:
            return EXIT_ERROR
        if time.monotonic() >= deadline:
            raise Failed(f"timed out waiting for the rollout of fleet {fleet!r}")
        time.sleep(POLL_SECONDS)


def _events_about(cli: kube.Api, kind: str, names: set[str]) -> list[dict[str, Any]]:
    return [
        e
        for e in cli.list(kube.EVENTS)
        if (e.get("involvedObject") or {}).get("kind") == kind
        and (e.get("involvedObject") or {}).get("name") in names
    ]


def cmd_why(cli: kube.Api, args: argparse.Namespace) -> str:
    kind, _, name = args.name.rpartition("/")
    now = _now()
    if kind in ("fleet", "mfleet", "marketplacefleet", f"marketplacefleets.{GROUP}"):
        fleet = cli.get(kube.FLEETS, name)
        if fleet is None:
            raise Failed(f'marketplacefleets.{GROUP} "{name}" not found')
        lines = why.explain_fleet(
            fleet,
            mnodes=_fleet_members(cli, name),
            events=_events_about(cli, "MarketplaceFleet", {name}),
            now=now,
        )
        return "\n".join(lines) + "\n"
    if kind not in ("", "mnode", "marketplacenode", f"marketplacenodes.{GROUP}"):
        raise Failed(f"why explains MarketplaceNodes and fleets, not {kind}")
    mnode = cli.get(kube.MNODES, name)
    if mnode is None:
        raise Failed(f'marketplacenodes.{GROUP} "{name}" not found')
    fleet_name = status.fleet_of(mnode)
    pod_name = str((mnode.get("status") or {}).get("podName") or name)
    lines = why.explain_node(
        mnode,
        pod=cli.get(kube.PODS, pod_name),
        fleet=cli.get(kube.FLEETS, fleet_name),
        fleet_policy=_policy_versions(cli, {fleet_name})[fleet_name],
        events=_events_about(cli, "MarketplaceNode", {name})
        + _events_about(cli, "Pod", {pod_name}),
        now=now,
    )
    return "\n".join(lines) + "\n"


def cmd_report(cli: kube.Api, args: argparse.Namespace, target: kube.Target) -> str:
    now = _now()
    stamp = now.strftime("%Y%m%dT%H%M%SZ")
    root = f"marketplace-report-{cli.namespace}-{stamp}"
    path = args.output_file or Path(f"{root}.tar.gz")
    header = (
        f"kubectl marketplace report, {rfc3339(now)}\n"
        f"namespace: {cli.namespace}; operator namespace: {args.operator_namespace}\n"
        f"context: {target.context or '(current)'}; log lines per container: {args.tail}\n"
        "Secret values are left out; tokens, keys and credentials are redacted.\n"
    )
    bundle = report.collect(
        cli, target, root=root, operator_namespace=args.operator_namespace,
        log_lines=args.tail, header=header,
    )  # fmt: skip
    path.write_bytes(bundle.tarball())
    for problem in bundle.problems:
        print(f"warning: not collected: {problem}", file=sys.stderr)
    return f"wrote {path} ({len(bundle.files)} files)\n"


def _node_tls(cli: kube.Api, mnode: dict[str, Any]) -> ssl.SSLContext | None:
    """How to verify the node when its pod serves HTTPS (its fleet's spec.tls)."""
    pod_name = str((mnode.get("status") or {}).get("podName") or mnode["metadata"]["name"])
    found = nodeaccess.pod_tls(cli.get(kube.PODS, pod_name))
    if found is None:
        return None
    return nodeaccess.context_for(found, cli.get(kube.SECRETS, found.secret))


def cmd_node(cli: kube.Api, args: argparse.Namespace, target: kube.Target) -> str:
    node = nodeaccess.pick(cli.list(kube.MNODES), node=args.node, fleet=args.fleet)
    mnode = cli.get(kube.MNODES, node)
    if mnode is None:
        raise Failed(f'marketplacenodes.{GROUP} "{node}" not found')
    end = nodeaccess.endpoint(mnode, context=_node_tls(cli, mnode))
    with nodeaccess.base_url(end, target.kubectl()) as base:
        if args.verb == "search":
            query = nodeaccess.search_query(
                args.keywords, tags=args.tag, category=args.category, limit=args.limit
            )
            page = nodeaccess.call(f"{base}/api/v1/search?{query}", context=end.context)
            if args.output:
                return output.dump(page, args.output)
            rows = nodeaccess.result_rows(page)
            if not rows:
                return f"No packages found (asked {node}).\n"
            return output.table(nodeaccess.RESULT_HEADERS, rows)
        try:
            content = args.file.read_bytes()
        except OSError as exc:
            raise Failed(f"cannot read {args.file}: {exc.strerror}") from None
        draft = {
            "name": args.name,
            "version": args.version,
            "description": args.description,
            "category": args.category,
            "tags": args.tag,
        }
        try:
            author = authors.load(authors.key_path(args.key_file))
        except (OSError, ValueError) as exc:
            raise Failed(str(exc)) from None
        result = nodeaccess.publish(base, content, draft, author, context=end.context)
    if args.output:
        return output.dump(result, args.output)
    return f"published {args.name}@{args.version} as {result.get('id')} (through {node})\n"


def run(args: argparse.Namespace, out: Callable[[str], None]) -> int:
    target = kube.Target(kubeconfig=args.kubeconfig, context=args.context, namespace=args.namespace)
    cli = kube.Api.connect(target)
    try:
        if args.verb == "rollout":
            return cmd_rollout(cli, args, out)
        text = {
            "status": lambda: cmd_status(cli, args),
            "ban": lambda: cmd_ban(cli, args),
            "why": lambda: cmd_why(cli, args),
            "report": lambda: cmd_report(cli, args, target),
            "search": lambda: cmd_node(cli, args, target),
            "publish": lambda: cmd_node(cli, args, target),
        }[args.verb]()
        out(text)
        return EXIT_OK
    finally:
        cli.close()


def main(argv: Sequence[str] | None = None) -> None:
    args = parser().parse_args(argv)

    def out(text: str) -> None:
        sys.stdout.write(text)
        sys.stdout.flush()

    try:
        code = run(args, out)
    except errors.KubeError as exc:
        if exc.status:  # the API server's answer, as kubectl prints it
            print(f"Error from server ({type(exc).__name__}): {exc.message}", file=sys.stderr)
        else:
            print(f"error: {exc.message}", file=sys.stderr)
        code = EXIT_ERROR
    except (Failed, bans.BanError, nodeaccess.NodeAccessError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        code = EXIT_ERROR
    except KeyboardInterrupt:
        code = 130
    sys.exit(code)
