"""The node's Ed25519 identity: load or create the key, and self-certifying peer ids.

A peer id is `mp` + the unpadded lower-case base32 of the raw 32-byte public
key (as libp2p inlines small Ed25519 keys). The id *is* the key, so anyone can
check a signature against a peer id without a key exchange or a lookup, and a
peer cannot claim an id whose private key it does not hold.
"""

from __future__ import annotations

import base64
import functools
import os
import re
from dataclasses import dataclass
from pathlib import Path

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from marketplace_protocol.errors import BadSignature, InvalidInput

PEER_ID_PREFIX = "mp"
_PEER_ID_RE = re.compile(r"^mp[a-z2-7]{52}$")
PEER_ID_REGEX = _PEER_ID_RE.pattern


def is_peer_id(text: str) -> bool:
    return _PEER_ID_RE.fullmatch(text) is not None


def peer_id_of(public_key: Ed25519PublicKey) -> str:
    raw = public_key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return PEER_ID_PREFIX + base64.b32encode(raw).decode().rstrip("=").lower()


@functools.lru_cache(maxsize=4_096)
def public_key_of(peer_id: str) -> Ed25519PublicKey:
    """The public key a peer id stands for; `InvalidInput` if it is not a well-formed id.

    Cached (bounded): a node verifies the same few hundred peers' signatures
    over and over, and decoding a key costs as much as a third of a verify.
    """
    if not _PEER_ID_RE.fullmatch(peer_id):
        raise InvalidInput("malformed peer id")
    raw = base64.b32decode(peer_id[len(PEER_ID_PREFIX) :].upper() + "====")
    return Ed25519PublicKey.from_public_bytes(raw)


def verify(peer_id: str, signature: bytes, message: bytes) -> None:
    """Raise `BadSignature` unless `signature` is `peer_id`'s signature of `message`."""
    try:
        public_key_of(peer_id).verify(signature, message)
    except (InvalidSignature, InvalidInput, ValueError) as exc:
        raise BadSignature("signature does not verify", details={"keyid": peer_id[:64]}) from exc


@dataclass(frozen=True)
class Identity:
    private_key: Ed25519PrivateKey
    peer_id: str

    @classmethod
    def generate(cls) -> Identity:
        key = Ed25519PrivateKey.generate()
        return cls(private_key=key, peer_id=peer_id_of(key.public_key()))

    def sign(self, message: bytes) -> bytes:
        return self.private_key.sign(message)

    def to_pem(self) -> bytes:
        return self.private_key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )

    def __repr__(self) -> str:  # never print key material
        return f"Identity(peer_id={self.peer_id!r})"


def from_pem(pem: bytes) -> Identity:
    key = serialization.load_pem_private_key(pem, password=None)
    if not isinstance(key, Ed25519PrivateKey):
        raise InvalidInput("identity key is not an Ed25519 private key")
    return Identity(private_key=key, peer_id=peer_id_of(key.public_key()))


def load_or_create(path: Path) -> Identity:
    """Load the PEM key at `path`, or create one there (mode 0600, written atomically)."""
    if path.exists():
        return from_pem(path.read_bytes())
    identity = Identity.generate()
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        os.write(fd, identity.to_pem())
        os.fsync(fd)
    finally:
        os.close(fd)
    tmp.replace(path)
    return identity
