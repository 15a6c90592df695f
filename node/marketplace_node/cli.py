"""`marketplace-node`: run a node, or talk to one (publish, search, fetch, peers, status...)."""

from __future__ import annotations

import argparse
import asyncio
import functools
import hashlib
import json
import re
import ssl
import sys
import urllib.parse
from pathlib import Path
from typing import Any

import pydantic
from marketplace_protocol.errors import StorageFull
from pydantic_settings import CliSettingsSource, SettingsError

from marketplace_node import api_client, config, publishing, tls
from marketplace_node.api_client import CliError, Exit

DEFAULT_NODE = "http://127.0.0.1:7070"


def _parser() -> tuple[argparse.ArgumentParser, CliSettingsSource[config.NodeSettings]]:
    """The whole CLI; `run`'s flags are generated from `config.NodeSettings`."""
    parser = argparse.ArgumentParser(prog="marketplace-node", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    run = sub.add_parser(
        "run",
        help="run a node",
        description="Run a node. Each setting is a flag, an environment variable or a key "
        "of the --config file, in that order of precedence.",
    )
    node_flags: CliSettingsSource[config.NodeSettings] = CliSettingsSource(
        config.NodeSettings, root_parser=run
    )

    for name, text in (
        ("publish", "publish a file"),
        ("search", "search the catalogue"),
        ("fetch", "download a package"),
        ("peers", "list peers"),
        ("status", "node status"),
        ("subscribe", "follow catalogue changes"),
    ):
        p = sub.add_parser(name, help=text)
        _node_option(p)
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
            p.add_argument("id", help="a package id, or NAME@VERSION, NAME@RANGE (^1.2), NAME")
            p.add_argument("--output", "-o", type=Path, required=True)
    publishing.add_commands(sub, _node_option)
    return parser, node_flags


def _node_option(p: argparse.ArgumentParser) -> None:
    p.add_argument("--node", default=DEFAULT_NODE, help="base URL of the node's HTTP API")
    p.add_argument(
        "--ca-file",
        type=Path,
        help="PEM CA bundle an https node's certificate must chain to (the fleet's ca.crt; "
        "default: the system's)",
    )
    p.add_argument(
        "--server-name",
        help="name the node's certificate must carry, when --node is an address "
        "(e.g. the fleet's name, as kubectl's --tls-server-name)",
    )


def _tls(args: argparse.Namespace) -> ssl.SSLContext | None:
    """The context https calls verify with; None (the system's) without --ca-file or
    --server-name."""
    if args.ca_file is None and args.server_name is None:
        return None
    try:
        return tls.client_context(args.ca_file, args.server_name)
    except (OSError, ssl.SSLError) as exc:
        raise CliError(Exit.LOCAL, f"cannot read the CA file {args.ca_file}: {exc}") from None


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


def _fetch(args: argparse.Namespace, context: ssl.SSLContext | None) -> Any:
    if re.fullmatch(r"[0-9a-f]{32}", args.id):
        view = api_client.call("GET", f"{args.node}/api/v1/packages/{args.id}", context=context)
    else:  # NAME, NAME@VERSION, NAME@RANGE
        name, _, want = args.id.partition("@")
        query = urllib.parse.urlencode({"want": want or "latest"})
        view = api_client.call(
            "GET",
            f"{args.node}/api/v1/names/{urllib.parse.quote(name)}/resolve?{query}",
            context=context,
        )
    content_url = f"{args.node}/api/v1/packages/{view['id']}/content"
    data = api_client.download(content_url, context=context)
    digest = view["package"]["digest"]
    if hashlib.sha256(data).hexdigest() != digest:
        raise CliError(
            Exit.INTEGRITY, f"the content of {args.id} does not match its signed digest {digest}"
        )
    try:
        args.output.write_bytes(data)
    except OSError as exc:
        raise CliError(Exit.LOCAL, f"cannot write {args.output}: {exc.strerror or exc}") from None
    return {
        "id": view["id"],
        "name": view["package"]["name"],
        "version": view["package"]["version"],
        "author": view["author"],
        "signedBy": view["signedBy"],
        "digest": digest,
        "size": len(data),
        "path": str(args.output),
    }


def _subscribe(args: argparse.Namespace, context: ssl.SSLContext | None) -> None:
    url = f"{args.node}/api/v1/subscribe?{_query_string(args)}"
    with api_client.request("GET", url, timeout=None, context=context) as resp:
        for line in resp:
            sys.stdout.write(line.decode())
            sys.stdout.flush()


def run_settings(argv: list[str]) -> config.NodeSettings:
    """The settings `marketplace-node run ARGV` runs with."""
    parser, node_flags = _parser()
    return _settings(parser.parse_args(["run", *argv]), node_flags)


def _settings(
    args: argparse.Namespace, node_flags: CliSettingsSource[config.NodeSettings]
) -> config.NodeSettings:
    try:
        return config.NodeSettings(_cli_settings_source=node_flags(parsed_args=args))
    except pydantic.ValidationError as exc:
        raise CliError(Exit.USAGE, f"invalid configuration: {_first_error(exc)}") from None
    except SettingsError as exc:
        raise CliError(Exit.USAGE, f"invalid configuration: {exc}") from None


def _run(settings: config.NodeSettings) -> None:
    # The server's imports (aiohttp, prometheus, the app) cost a second on a busy machine:
    # only `run` pays it, not every client command.
    from marketplace_protocol import logs  # noqa: PLC0415

    from marketplace_node import allocator, runner  # noqa: PLC0415

    logs.configure(settings.log_level)
    allocator.pin_mmap_threshold()  # before the tables exist
    try:
        asyncio.run(runner.serve(settings))
    except StorageFull as exc:  # one line, as every failure: free space, or grow the volume
        raise CliError(Exit.LOCAL, f"cannot start: {exc.message}") from None
    except OSError as exc:  # the address is taken or not ours, the data dir not writable
        raise CliError(Exit.LOCAL, f"cannot start: {exc.strerror or exc}") from None


def _first_error(exc: pydantic.ValidationError) -> str:
    """'port: Input should be less than or equal to 65535' (and how many more)."""
    errors = exc.errors(include_url=False)
    first = errors[0]
    where = ".".join(str(part) for part in first["loc"]) or "settings"
    more = f" (and {len(errors) - 1} more)" if len(errors) > 1 else ""
    return f"{where}: {first['msg']}{more}"


def _client(args: argparse.Namespace) -> None:
    node = args.node.rstrip("/")
    if not node.startswith(("http://", "https://")):
        raise CliError(Exit.USAGE, "--node must be an http:// or https:// URL")
    args.node = node
    context = _tls(args)
    if args.command == "subscribe":
        _subscribe(args, context)
        return
    call = functools.partial(api_client.call, context=context)
    result = {
        "publish": lambda: publishing.publish(args, call),
        "owner": lambda: publishing.record(args, call),
        "yank": lambda: publishing.record(args, call),
        "unyank": lambda: publishing.record(args, call),
        "search": lambda: call("GET", f"{node}/api/v1/search?{_query_string(args)}"),
        "fetch": lambda: _fetch(args, context),
        "peers": lambda: call("GET", f"{node}/api/v1/peers"),
        "status": lambda: call("GET", f"{node}/api/v1/status"),
    }[args.command]()
    json.dump(result, sys.stdout, indent=2)
    sys.stdout.write("\n")


def main(argv: list[str] | None = None) -> None:
    """Exit codes: `api_client.Exit` (docs/node.md, "Exit codes")."""
    parser, node_flags = _parser()
    args = parser.parse_args(argv)
    try:
        if args.command == "run":
            _run(_settings(args, node_flags))
        elif args.command == "key":
            json.dump(publishing.key(args), sys.stdout, indent=2)
            sys.stdout.write("\n")
        else:
            _client(args)
    except CliError as exc:
        print(f"marketplace-node: {exc.message}", file=sys.stderr)
        raise SystemExit(exc.code) from None
    except KeyboardInterrupt:
        raise SystemExit(Exit.INTERRUPTED) from None


if __name__ == "__main__":
    main()
