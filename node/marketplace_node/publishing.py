"""The publisher's side of the CLI: sign on the client, then hand the node signed documents.

`publish` uploads the content, signs the package with the author key (see
`authors`) and posts the signed metadata; `owner` and `yank` post signed
owner records. The node only verifies: it never holds or uses an author's key.
"""

from __future__ import annotations

import argparse
import hashlib
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from marketplace_protocol import identity

from marketplace_node import authors, sealing
from marketplace_node.api_client import CliError, Exit
from marketplace_node.model import PackageDraft, RecordAction

Call = Callable[..., Any]


def add_commands(sub: Any, node_option: Callable[[argparse.ArgumentParser], None]) -> None:
    key = sub.add_parser("key", help="your author key: new | show")
    key.add_argument("action", choices=("new", "show"))
    key.add_argument("--key-file", type=Path, help=f"default: ${authors.KEY_ENV}, then ~/.config")
    owner = sub.add_parser("owner", help="add or remove a co-owner of a name, or transfer it")
    owner.add_argument("action", choices=("add", "remove", "transfer"))
    owner.add_argument("name")
    owner.add_argument("author", help="the other author's id (`key show`)")
    for name, text in (("yank", "yank a version"), ("unyank", "undo a yank")):
        p = sub.add_parser(name, help=text)
        p.add_argument("name")
        p.add_argument("version")
    for p in (owner, *(sub.choices[n] for n in ("yank", "unyank"))):
        p.add_argument("--key-file", type=Path)
        node_option(p)
    sub.choices["publish"].add_argument("--key-file", type=Path)


def key(args: argparse.Namespace) -> dict[str, str]:
    path = authors.key_path(args.key_file)
    try:
        ident = authors.new(path) if args.action == "new" else authors.load(path)
    except (OSError, ValueError) as exc:
        raise CliError(Exit.LOCAL, str(exc)) from None
    return {"author": ident.peer_id, "keyFile": str(path)}


def _author(args: argparse.Namespace) -> identity.Identity:
    try:
        return authors.load(authors.key_path(args.key_file))
    except (OSError, ValueError) as exc:
        raise CliError(Exit.LOCAL, str(exc)) from None


def publish(args: argparse.Namespace, call: Call) -> Any:
    try:
        data = args.file.read_bytes()
    except OSError as exc:
        raise CliError(Exit.LOCAL, f"cannot read {args.file}: {exc.strerror or exc}") from None
    author = _author(args)
    digest = hashlib.sha256(data).hexdigest()
    call("PUT", f"{args.node}/api/v1/blobs/{digest}", data, "application/octet-stream")
    draft = PackageDraft(
        name=args.name,
        version=args.version,
        description=args.description,
        category=args.category,
        tags=tuple(args.tag),
        digest=digest,
        size=len(data),
    )
    meta = sealing.sign_package(author, draft, created=int(time.time()))
    return call(
        "POST", f"{args.node}/api/v1/packages", meta.model_dump_json(by_alias=True).encode()
    )


_ACTIONS = {
    "add": RecordAction.ADD_OWNER,
    "remove": RecordAction.REMOVE_OWNER,
    "transfer": RecordAction.TRANSFER,
    "yank": RecordAction.YANK,
    "unyank": RecordAction.UNYANK,
}


def record(args: argparse.Namespace, call: Call) -> Any:
    author = _author(args)
    action = _ACTIONS[args.action if args.command == "owner" else args.command]
    subject = args.author if args.command == "owner" else args.version
    signed = sealing.sign_record(
        author, name=args.name, action=action, subject=subject, created=int(time.time())
    )
    return call(
        "POST",
        f"{args.node}/api/v1/names/{args.name}/records",
        signed.model_dump_json(by_alias=True).encode(),
    )
