"""Every size, count and time limit of the node in one place, so tuning touches one file."""

from __future__ import annotations

from typing import Final

from marketplace_protocol import admin

# Package metadata (validated on every boundary: client API, gossip, sync). Names and
# versions are in the protocol too: takedowns (`ContentBlock`) name them.
NAME_MAX: Final = admin.PACKAGE_NAME_MAX
VERSION_MAX: Final = admin.VERSION_MAX
DESCRIPTION_MAX: Final = 4_096
TAG_MAX: Final = 64  # also categories (same label syntax)
TAGS_MAX: Final = 32
CONTENT_MAX_BYTES: Final = 64 * 1024 * 1024
DOWNLOADS_MAX: Final = 2**53  # exact in a JSON number and a float

# Queries.
KEYWORD_MAX: Final = 64
KEYWORDS_MAX: Final = 16
QUERY_TAGS_MAX: Final = 16
PAGE_LIMIT_DEFAULT: Final = 20
PAGE_LIMIT_MAX: Final = 200
CURSOR_MAX: Final = 512

# Peer protocol.
ADDRESS_MAX: Final = 256
# The request line and each header field: longer ones get a typed 414/431 from our
# middleware. aiohttp's parser is given PARSER_LINE_MAX, so that between the two it
# is our answer (an `ErrorBody`) and not its plain-text 400; beyond it the parser's.
REQUEST_LINE_MAX: Final = 8_190
HEADER_FIELD_MAX: Final = 8_190
PARSER_LINE_MAX: Final = 64 * 1024
ANNOUNCE_BODY_MAX: Final = 64 * 1024  # any peer request body (announce, hello, replicate)
# A `replicate` carries a package's bytes up to this size (base64: 4/3 of it, within the
# body limit beside the announcement); larger ones the receiver fetches.
INLINE_CONTENT_MAX: Final = 32 * 1024
CLIENT_JSON_MAX: Final = 256 * 1024
# Per peer: the copies it asks us to take (`replicate`) and its fetches of bytes we asked it
# to copy. Not the policy's `fetch` limit, which is for clients and fetches on their behalf.
COPY_LIMIT: Final = admin.Limit(rate=200, burst=400)
HOP_LIMIT_MAX: Final = 16
GOSSIP_REACHED_MAX: Final = 64  # peer ids in a push's `Gossip-Reached` hint (one table)
CLOCK_SKEW_SECONDS: Final = 300.0  # RFC 9421 `created` must lie within now ± this
NONCE_CACHE_MAX: Final = 200_000  # replay cache entries (bounded memory)
NONCE_MAX: Final = 64
SIGNATURE_HEADER_MAX: Final = 1_024
PEER_EXCHANGE_MAX: Final = 32  # peers returned by one hello
SYNC_PAGE_MAX: Final = 500
SEQ_MAX: Final = 2**63 - 1  # change sequence numbers are SQLite integers
SEEN_CACHE_MAX: Final = 100_000
SEEN_CACHE_TTL_SECONDS: Final = 3_600.0
PROVIDER_TTL_MAX_SECONDS: Final = 24 * 3_600.0
PROVIDERS_PER_PACKAGE_MAX: Final = 64
PROVIDER_PACKAGES_MAX: Final = 100_000  # packages with provider records held in memory

# Subscriptions.
SUBSCRIBER_QUEUE_MAX: Final = 1_024
SUBSCRIBERS_MAX: Final = 1_024
