"""A publisher's own Ed25519 key (the author key), kept on the publisher's machine.

The key is a PEM (PKCS#8) file like a node's identity, created mode 0600. Its
path: `--key-file`, else `MARKETPLACE_AUTHOR_KEY_FILE`, else
`$XDG_CONFIG_HOME/marketplace-node/author.pem` (`~/.config/...`). The
author id (shown by `marketplace-node key show`) has the peer-id form: it
*is* the public key, so every node checks a package's signature without a
lookup. Nodes never see the private key and never sign for a client.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

from marketplace_protocol import identity

KEY_ENV = "MARKETPLACE_AUTHOR_KEY_FILE"


def key_path(explicit: Path | None, env: Mapping[str, str] = os.environ) -> Path:
    if explicit is not None:
        return explicit
    if env.get(KEY_ENV):
        return Path(env[KEY_ENV])
    config = Path(env.get("XDG_CONFIG_HOME") or Path.home() / ".config")
    return config / "marketplace-node" / "author.pem"


def new(path: Path) -> identity.Identity:
    """Create a key at `path`; refuses to replace one (a lost key loses its names)."""
    if path.exists():
        raise FileExistsError(f"{path} exists; an author key is never overwritten")
    return identity.load_or_create(path)


def load(path: Path) -> identity.Identity:
    if not path.is_file():
        raise FileNotFoundError(f"no author key at {path}; create one: marketplace-node key new")
    return identity.from_pem(path.read_bytes())
