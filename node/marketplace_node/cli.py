"""`marketplace-node`: run a node, or talk to one (publish, search, fetch, peers, status...)."""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import json
import sys
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any

import pydantic

from marketplace_node import config, logs, runner

DEFAULT_NODE = "http://127.0.0.1:7070"
TIMEOUT = 60.0


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="marketplace-node", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    run = sub.add_parser("run", help="run a node (flags override env, env overrides --config)")
    run.add_argument("--config", type=Path, help="YAML or JSON settings file")
    run.add_argument("--host")
    run.add_argument("--port", type=int)
    run.add_argument("--data-dir", type=Path)
    run.add_argument("--identity-file", type=Path)
    run.add_argument("--admin-token-file", type=Path)
    run.add_argument("--policy-dir", type=Path)
    run.add_argument("--fleet")
    run.add_argument("--bootstrap-peers", help="comma-separated base URLs")
    run.add_argument("--advertise-url")
    run.add_argument("--max-peers", type=int)
    run.add_argument("--log-level")

    for name, text in (
        ("publish", "publish a file"),
        ("search", "search the catalogue"),
        ("fetch", "download a package"),
        ("peers", "list peers"),
        ("status", "node status"),
        ("subscribe", "follow catalogue changes"),
    ):
        p = sub.add_parser(name, help=text)
        p.add_argument("--node", default=DEFAULT_NODE, help="base URL of the node's HTTP API")
        if name == "publish":
            p.add_argument("file", type=Path)
            p.add_argument("--name", required=True)
            p.add_argument("--version", required=True)
            p.add_argument("--description", default="")
            p.add_argument("--category", default="misc")
            p.add_argument("--tag", action="append", default=[])
        if name in ("search", "subscribe"):
            p.add_argument("keywords", nargs="*")
            p.add_argument("--tag", action="append", default=[])
            p.add_argument("--category")
            p.add_argument("--min-downloads", type=int)
        if name == "search":
            p.add_argument("--limit", type=int)
            p.add_argument("--cursor")
        if name == "subscribe":
            p.add_argument("--cursor", default="0")
        if name == "fetch":
            p.add_argument("id")
            p.add_argument("--output", "-o", type=Path, required=True)
    return parser


def _call(
    method: str, url: str, body: bytes | None = None, content_type: str = "application/json"
) -> Any:
    request = urllib.request.Request(  # noqa: S310 - http(s) only, checked in main()
        url, data=body, method=method, headers={"Content-Type": content_type}
    )
    try:
        with urllib.request.urlopen(request, timeout=TIMEOUT) as resp:  # noqa: S310 - user-given node URL
            return json.loads(resp.read() or b"null")
    except urllib.error.HTTPError as exc:
        raise SystemExit(f"error {exc.code}: {exc.read().decode(errors='replace')}") from exc


def _query_string(args: argparse.Namespace) -> str:
    pairs: list[tuple[str, str]] = [("q", k) for k in args.keywords] + [
        ("tag", t) for t in args.tag
    ]
    for key, value in (
        ("category", args.category),
        ("minDownloads", args.min_downloads),
        ("limit", getattr(args, "limit", None)),
        ("cursor", args.cursor),
    ):
        if value is not None:
            pairs.append((key, str(value)))
    return urllib.parse.urlencode(pairs)


def _publish(args: argparse.Namespace) -> Any:
    data = args.file.read_bytes()
    digest = hashlib.sha256(data).hexdigest()
    _call("PUT", f"{args.node}/api/v1/blobs/{digest}", data, "application/octet-stream")
    draft = {
        "name": args.name,
        "version": args.version,
        "description": args.description,
        "category": args.category,
        "tags": args.tag,
        "digest": digest,
        "size": len(data),
    }
    return _call("POST", f"{args.node}/api/v1/packages", json.dumps(draft).encode())


def _fetch(args: argparse.Namespace) -> Any:
    view = _call("GET", f"{args.node}/api/v1/packages/{args.id}")
    with urllib.request.urlopen(  # noqa: S310 - http(s) only, checked in main()
        f"{args.node}/api/v1/packages/{args.id}/content", timeout=TIMEOUT
    ) as resp:
        data = resp.read()
    if hashlib.sha256(data).hexdigest() != view["package"]["digest"]:
        raise SystemExit("downloaded content does not match the signed digest")
    args.output.write_bytes(data)
    return {
        "id": args.id,
        "digest": view["package"]["digest"],
        "size": len(data),
        "path": str(args.output),
    }


def _subscribe(args: argparse.Namespace) -> None:
    url = f"{args.node}/api/v1/subscribe?{_query_string(args)}"
    with urllib.request.urlopen(url, timeout=None) as resp:  # noqa: S310
        for line in resp:
            sys.stdout.write(line.decode())
            sys.stdout.flush()


def main(argv: list[str] | None = None) -> None:
    args = _parser().parse_args(argv)
    if args.command == "run":
        overrides = {k: v for k, v in vars(args).items() if k not in ("command", "config")}
        try:
            settings = config.load(args.config, overrides)
        except pydantic.ValidationError as exc:
            raise SystemExit(f"invalid configuration:\n{exc}") from exc
        logs.configure(settings.log_level)
        asyncio.run(runner.serve(settings))
        return
    node = args.node.rstrip("/")
    if not node.startswith(("http://", "https://")):
        raise SystemExit("--node must be an http:// or https:// URL")
    args.node = node
    if args.command == "subscribe":
        _subscribe(args)
        return
    result = {
        "publish": lambda: _publish(args),
        "search": lambda: _call("GET", f"{node}/api/v1/search?{_query_string(args)}"),
        "fetch": lambda: _fetch(args),
        "peers": lambda: _call("GET", f"{node}/api/v1/peers"),
        "status": lambda: _call("GET", f"{node}/api/v1/status"),
    }[args.command]()
    json.dump(result, sys.stdout, indent=2)
    sys.stdout.write("\n")


if __name__ == "__main__":
    main()
