"""Wire models of the client API and the peer protocol: limits and canonical signed forms.

Signed documents (a package's metadata, an announcement) are signed over a
canonical JSON encoding: camelCase keys, sorted, no spaces, UTF-8, integers
only (no floats, whose text form is ambiguous), prefixed by a domain tag so a
signature of one kind can never be replayed as another.
"""

from __future__ import annotations

import base64
import enum
import hashlib
import json
import re
from typing import Annotated, Any, Final

from marketplace_protocol import identity
from marketplace_protocol.admin import PACKAGE_NAME_PATTERN, VERSION_PATTERN
from pydantic import BaseModel, ConfigDict, Field, StringConstraints, model_validator
from pydantic.alias_generators import to_camel

from marketplace_node import limits

_SAFE_TEXT = r"^[^\x00-\x08\x0b-\x1f\x7f]*$"  # no control characters except tab and newline
Name = Annotated[
    str,
    StringConstraints(min_length=1, max_length=limits.NAME_MAX, pattern=PACKAGE_NAME_PATTERN),
]
_VERSION_PATTERN = VERSION_PATTERN
_VERSION_RE = re.compile(_VERSION_PATTERN)
Version = Annotated[
    str,
    StringConstraints(min_length=1, max_length=limits.VERSION_MAX, pattern=_VERSION_PATTERN),
]
Label = Annotated[
    str,
    StringConstraints(
        min_length=1, max_length=limits.TAG_MAX, pattern=r"^[A-Za-z0-9][A-Za-z0-9._+-]*$"
    ),
]
Description = Annotated[
    str, StringConstraints(max_length=limits.DESCRIPTION_MAX, pattern=_SAFE_TEXT)
]
Keyword = Annotated[
    str,
    StringConstraints(
        min_length=1,
        max_length=limits.KEYWORD_MAX,
        pattern=r"^[^\x00-\x1f\x7f]*\S[^\x00-\x1f\x7f]*$",
    ),
]
PeerIdStr = Annotated[str, StringConstraints(pattern=identity.PEER_ID_REGEX)]
Digest = Annotated[str, StringConstraints(pattern=r"^[0-9a-f]{64}$")]
PackageId = Annotated[str, StringConstraints(pattern=r"^[0-9a-f]{32}$")]
Address = Annotated[
    str,
    StringConstraints(
        max_length=limits.ADDRESS_MAX,
        pattern=r"^https?://(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9.\-]+)(:[0-9]{1,5})?$",  # IPv6 bracketed
    ),
]
Signature = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9+/]{86}==$")]  # 64 bytes base64
Nonce = Annotated[str, StringConstraints(pattern=r"^[0-9a-f]{16,64}$")]

PACKAGE_DOMAIN = b"marketplace-package-v1\n"  # node-signed packages of earlier releases
AUTHOR_PACKAGE_DOMAIN = b"marketplace-package-v2\n"  # packages signed by their author's key
NAME_RECORD_DOMAIN = b"marketplace-name-record-v1\n"
ANNOUNCEMENT_DOMAIN = b"marketplace-announcement-v1\n"


class Model(BaseModel):
    """camelCase on the wire, unknown fields refused, immutable."""

    model_config = ConfigDict(
        extra="forbid", frozen=True, populate_by_name=True, alias_generator=to_camel
    )

    def wire(self) -> dict[str, Any]:
        return self.model_dump(mode="json", by_alias=True)


def canonical(document: dict[str, Any]) -> bytes:
    return json.dumps(document, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def b64(raw: bytes) -> str:
    return base64.b64encode(raw).decode()


class PackageMeta(Model):
    """A package as its publisher signed it: the seed's fields, content digest, size, signature.

    `publisher` is the author's key (its id). `created` (the author's signing
    time, seconds) marks an author-signed package; packages of earlier
    releases lack it: their node signed them (`signed_by == "node"`), they are
    kept readable but never own a name. `downloads` is not here: it is a local
    statistic no peer can vouch for, so it is kept by each node and never gossiped.
    """

    name: Name
    version: Version
    description: Description = ""
    category: Label
    tags: tuple[Label, ...] = Field(default=(), max_length=limits.TAGS_MAX)
    digest: Digest
    size: int = Field(ge=0, le=limits.CONTENT_MAX_BYTES)
    publisher: PeerIdStr
    created: int | None = Field(default=None, ge=0, le=2**40)
    signature: Signature

    @property
    def author_signed(self) -> bool:
        return self.created is not None

    @property
    def signed_by(self) -> str:
        return "author" if self.author_signed else "node"

    @property
    def id(self) -> str:
        """Self-certifying id: the hash of the signed metadata (node-signed packages of earlier
        releases keep their (publisher, name, version) id)."""
        if not self.author_signed:
            return package_id(self.publisher, self.name, self.version)
        return hashlib.sha256(self.signed_bytes()).hexdigest()[:32]

    def signed_bytes(self) -> bytes:
        domain = AUTHOR_PACKAGE_DOMAIN if self.author_signed else PACKAGE_DOMAIN
        return domain + canonical(
            self.model_dump(mode="json", by_alias=True, exclude={"signature"}, exclude_none=True)
        )


def package_id(publisher: str, name: str, version: str) -> str:
    return hashlib.sha256(f"{publisher}\n{name}\n{version}".encode()).hexdigest()[:32]


class AnnouncementKind(enum.StrEnum):
    PACKAGE = "package"
    NEW_VERSION = "new_version"
    PROVIDER_ADDED = "provider_added"
    PROVIDER_REMOVED = "provider_removed"
    PEER_LEAVING = "peer_leaving"
    NAME_RECORD = "name_record"


class RecordAction(enum.StrEnum):
    """What an owner record does to a name (see `names.resolve`)."""

    ADD_OWNER = "add_owner"
    REMOVE_OWNER = "remove_owner"
    TRANSFER = "transfer"
    YANK = "yank"
    UNYANK = "unyank"


OWNER_ACTIONS = frozenset(
    {RecordAction.ADD_OWNER, RecordAction.REMOVE_OWNER, RecordAction.TRANSFER}
)


class NameRecord(Model):
    """A signed change to a name: co-owners, transfer, yanks. `subject` is a key (owner
    actions) or a version (yank, unyank); `signer` must own the name when it takes effect."""

    name: Name
    action: RecordAction
    subject: str = Field(min_length=1, max_length=limits.VERSION_MAX)
    signer: PeerIdStr
    created: int = Field(ge=0, le=2**40)
    signature: Signature

    @model_validator(mode="after")
    def _subject_matches_action(self) -> NameRecord:
        if self.action in OWNER_ACTIONS:
            if not identity.is_peer_id(self.subject):
                raise ValueError(f"{self.action} names a key (an author id) as subject")
        elif not _VERSION_RE.fullmatch(self.subject):
            raise ValueError(f"{self.action} names a version as subject")
        return self

    def signed_bytes(self) -> bytes:
        return NAME_RECORD_DOMAIN + canonical(
            self.model_dump(mode="json", by_alias=True, exclude={"signature"})
        )

    @property
    def id(self) -> str:
        return hashlib.sha256(self.signed_bytes()).hexdigest()


PACKAGE_KINDS = frozenset({AnnouncementKind.PACKAGE, AnnouncementKind.NEW_VERSION})
PROVIDER_KINDS = frozenset({AnnouncementKind.PROVIDER_ADDED, AnnouncementKind.PROVIDER_REMOVED})


class ProviderRecord(Model):
    """`peerId` at `address` serves the content of `packageId` for `ttlSeconds` after receipt."""

    package_id: PackageId
    peer_id: PeerIdStr
    address: Address
    ttl_seconds: int = Field(ge=1, le=int(limits.PROVIDER_TTL_MAX_SECONDS))


class Announcement(Model):
    """One gossiped catalogue change, signed by its origin; `hops` is the only unsigned field.

    A package announcement may carry the origin's provider record, so one
    message both publishes a package and says where its content is.
    """

    kind: AnnouncementKind
    origin: PeerIdStr
    created: int = Field(ge=0, le=2**40)
    nonce: Nonce
    package: PackageMeta | None = None
    provider: ProviderRecord | None = None
    record: NameRecord | None = None
    address: Address | None = None
    signature: Signature
    hops: int = Field(default=0, ge=0, le=limits.HOP_LIMIT_MAX)

    @model_validator(mode="after")
    def _payload_matches_kind(self) -> Announcement:
        has = (self.package is not None, self.provider is not None)
        if self.kind in PACKAGE_KINDS:
            if self.package is None:
                raise ValueError(f"{self.kind} carries a package")
            if self.provider is not None and (
                self.provider.package_id != self.package.id or self.provider.peer_id != self.origin
            ):
                raise ValueError("a package announcement may only name its origin as provider")
        if self.kind in PROVIDER_KINDS:
            if has != (False, True):
                raise ValueError(f"{self.kind} carries exactly a provider record")
            assert self.provider is not None
            if self.provider.peer_id != self.origin:
                raise ValueError("a peer only announces itself as a provider")
        if self.kind is AnnouncementKind.PEER_LEAVING and has != (False, False):
            raise ValueError("peer_leaving carries no payload")
        if (self.kind is AnnouncementKind.NAME_RECORD) != (self.record is not None):
            raise ValueError("exactly the name_record kind carries a record")
        if self.record is not None and has != (False, False):
            raise ValueError("name_record carries only the record")
        return self

    def signed_bytes(self) -> bytes:
        body = self.model_dump(
            mode="json", by_alias=True, exclude={"signature", "hops"}, exclude_none=True
        )
        return ANNOUNCEMENT_DOMAIN + canonical(body)

    @property
    def id(self) -> str:
        return hashlib.sha256(self.signed_bytes()).hexdigest()


class PackageDraft(Model):
    """A package's fields before its author signs it (`sealing.sign_package`)."""

    name: Name
    version: Version
    description: Description = ""
    category: Label
    tags: tuple[Label, ...] = Field(default=(), max_length=limits.TAGS_MAX)
    digest: Digest
    size: int = Field(ge=0, le=limits.CONTENT_MAX_BYTES)


class Query(Model):
    """The seed's query: any keyword matches name/description/tags (substring, case-insensitive),
    every tag must match (case-insensitive), exact category, minimum downloads."""

    keywords: tuple[Keyword, ...] = Field(default=(), max_length=limits.KEYWORDS_MAX)
    tags: tuple[Label, ...] = Field(default=(), max_length=limits.QUERY_TAGS_MAX)
    category: Label | None = None
    min_downloads: int | None = Field(default=None, ge=0, le=limits.DOWNLOADS_MAX)
    limit: int = Field(default=limits.PAGE_LIMIT_DEFAULT, ge=1, le=limits.PAGE_LIMIT_MAX)
    cursor: str | None = Field(default=None, max_length=limits.CURSOR_MAX)


QUERY_PARAMETERS: Final[dict[str, tuple[str, bool]]] = {
    "q": ("keywords", True),
    "tag": ("tags", True),
    "category": ("category", False),
    "minDownloads": ("min_downloads", False),
    "limit": ("limit", False),
    "cursor": ("cursor", False),
}
"""The URL form of a `Query` (search, subscribe): parameter -> (field, may repeat)."""


class ProviderView(Model):
    peer_id: str
    address: str
    reputation: float


class PackageView(Model):
    """A package as a client sees it: `author` is the key that signed it, `signedBy` says
    whether that is an author's key or (packages of earlier releases) a node's."""

    id: str
    package: PackageMeta
    author: str
    signed_by: str
    yanked: bool = False
    downloads: int
    local: bool
    providers: tuple[ProviderView, ...] = ()


class SearchResult(Model):
    """One name (author-signed: its latest non-yanked version, and all its versions)."""

    id: str
    package: PackageMeta
    author: str = ""
    signed_by: str = ""
    versions: tuple[str, ...] = ()
    downloads: int
    score: float | None  # None: not a finite number (ranked last)
    providers: int


class OwnerView(Model):
    """A name's owners and versions as this node resolves them."""

    name: str
    owners: tuple[str, ...]
    versions: tuple[str, ...]
    yanked: tuple[str, ...]
    latest: str | None


class SearchPage(Model):
    results: tuple[SearchResult, ...]
    next_cursor: str | None = None


class PeerView(Model):
    peer_id: str
    address: str
    last_seen_seconds_ago: float
    reputation: float
    successes: int
    failures: int


class Hello(Model):
    """Peer exchange, signed like every peer request: who I am and where to reach me."""

    address: Address
    fleet: str = Field(default="", max_length=63)


class HelloReply(Model):
    peer_id: PeerIdStr
    address: Address
    fleet: str = Field(default="", max_length=63)
    peers: tuple[tuple[PeerIdStr, Address], ...] = Field(
        default=(), max_length=limits.PEER_EXCHANGE_MAX
    )


class ReplicateRequest(Model):
    """Fetch and provide a package: a draining sole provider hands it over, a publish wants
    `minInSync` copies before it answers, a repairer restores the factor. `announcement`
    carries the package to a peer that may not have heard of it yet; `content` carries
    the bytes of a small package (base64), which saves the receiver a fetch back."""

    model_config = ConfigDict(
        **Model.model_config, ser_json_bytes="base64", val_json_bytes="base64"
    )

    package_id: PackageId
    announcement: Announcement | None = None
    content: bytes | None = None

    @model_validator(mode="after")
    def _announces_the_package(self) -> ReplicateRequest:
        ann = self.announcement
        if ann is not None and (ann.package is None or ann.package.id != self.package_id):
            raise ValueError("the announcement carries another package")
        if self.content is not None and len(self.content) > limits.INLINE_CONTENT_MAX:
            raise ValueError(f"content sent inline is at most {limits.INLINE_CONTENT_MAX} bytes")
        return self


class Change(Model):
    seq: int = Field(ge=1)
    announcement: Announcement


class ChangePage(Model):
    changes: tuple[Change, ...] = Field(max_length=limits.SYNC_PAGE_MAX)
    last_seq: int = Field(ge=0)
    head: int = Field(ge=0)  # the serving peer's newest seq
    more: bool


class NodeInfo(Model):
    peer_id: str
    address: str
    fleet: str
    ready: bool
    draining: bool
    packages: int
    peers: int
    last_seq: int
