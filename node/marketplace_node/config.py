"""Node configuration: one pydantic-settings model is the flags, the environment and the file.

Precedence (highest first): command-line flags, environment variables
(`MARKETPLACE_NODE_<FIELD>`), the config file (`--config`, YAML or JSON),
defaults. `marketplace-node run --help` is generated from the fields below
(their descriptions, defaults and variables), so a setting cannot exist in one
place and be missing in another. Built once by the CLI and passed down;
nothing reads the environment anywhere else.
"""

from __future__ import annotations

import ipaddress
from ipaddress import IPv4Network, IPv6Network
from pathlib import Path
from typing import Annotated, Any

import yaml
from pydantic import Field, FilePath, SecretStr, field_validator, model_validator
from pydantic.fields import FieldInfo
from pydantic_settings import (
    BaseSettings,
    CliSuppress,
    NoDecode,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    SettingsError,
    YamlConfigSettingsSource,
)

from marketplace_node import limits


class ConfigFileSource(PydanticBaseSettingsSource):
    """The YAML or JSON file named by `config`, as the sources before this one set it
    (a flag or `MARKETPLACE_NODE_CONFIG`)."""

    def get_field_value(self, field: FieldInfo, field_name: str) -> tuple[Any, str, bool]:
        return None, field_name, False  # unused: __call__ reads the whole file at once

    def __call__(self) -> dict[str, Any]:
        path = self.current_state.get("config")
        if not path or not Path(path).is_file():
            return {}  # no file, or a missing one: the `config` field's validation says so
        try:
            return YamlConfigSettingsSource(self.settings_cls, yaml_file=Path(path))()
        except (OSError, yaml.YAMLError) as exc:
            raise SettingsError(f"cannot read the config file {path}: {exc}") from exc


class NodeSettings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix="MARKETPLACE_NODE_",
        env_nested_delimiter="__",
        extra="forbid",
        cli_kebab_case=True,
        cli_show_env_vars=True,
        cli_hide_none_type=True,
    )

    config: FilePath | None = Field(
        default=None, description="YAML or JSON file of these settings (snake_case keys)"
    )
    host: str = Field(
        default="127.0.0.1",
        max_length=253,
        description="address of the public listener (peer protocol, client API)",
    )
    port: int = Field(default=7070, ge=0, le=65_535, description="TCP port of the public listener")
    private_host: str | None = Field(
        default=None,
        max_length=253,
        description="address of the private listener (admin API, /metrics, probes; default HOST)",
    )
    private_port: int = Field(
        default=9070, ge=0, le=65_535, description="TCP port of the private listener"
    )
    advertise_url: str | None = Field(
        default=None,
        max_length=limits.ADDRESS_MAX,
        description="URL peers use to reach this node (default http(s)://HOST:PORT; "
        "required when listening on 0.0.0.0 or ::)",
    )
    data_dir: Path = Field(
        default=Path("./marketplace-data"), description="SQLite catalogue and content blobs"
    )
    identity_file: Path | None = Field(
        default=None,
        description="Ed25519 key (PEM), created if missing (default DATA_DIR/identity/ed25519.pem)",
    )
    admin_token_file: Path | None = Field(
        default=None,
        description="file holding the bearer token of /admin/v1 (wins over "
        "MARKETPLACE_NODE_ADMIN_TOKEN; with neither, every admin call is refused)",
    )
    # For tests and local runs, never on a command line (where `ps` shows it); the file wins.
    admin_token: CliSuppress[SecretStr | None] = None
    admin_token_overlap_seconds: float = Field(
        default=300.0,
        ge=0,
        le=86_400,
        description="after the token file changes, how long the token before stays accepted",
    )
    policy_dir: Path | None = Field(
        default=None, description="directory of the mounted policy ConfigMap (docs/node.md)"
    )
    tls_cert_file: Path | None = Field(
        default=None,
        description="PEM certificate (chain) of the public listener; with tls_key_file the "
        "node serves HTTPS there, and reloads both when they change (docs/node.md, TLS)",
    )
    tls_key_file: Path | None = Field(default=None, description="PEM private key of tls_cert_file")
    tls_ca_file: Path | None = Field(
        default=None,
        description="PEM bundle peers' certificates must chain to (default: the system's)",
    )
    tls_peer_name: str | None = Field(
        default=None,
        max_length=253,
        pattern=r"^[A-Za-z0-9]([-.A-Za-z0-9]*[A-Za-z0-9])?$",
        description="DNS name every peer's certificate must carry, e.g. the fleet's name "
        "(default: the host of each peer's URL)",
    )
    fleet: str = Field(
        default="default",
        max_length=63,
        description="fleet name; peers of other fleets are refused",
    )
    bootstrap_peers: Annotated[list[str], NoDecode] = Field(
        default_factory=list, description="base URLs of peers to join, separated by commas"
    )
    # Where peer addresses may point: with networks set, only IP literals inside them
    # are called (no DNS), so a peer cannot aim us at another service (SSRF).
    peer_networks: Annotated[list[IPv4Network | IPv6Network], NoDecode] = Field(
        default_factory=list,
        description="CIDRs peer addresses must be IP literals in, separated by commas "
        "(empty: any address, names resolved)",
    )
    # Behind a balancer or proxy that adds X-Forwarded-For (docs/operations.md, "Client
    # addresses behind a balancer"): only these senders' header is believed.
    trusted_proxies: Annotated[list[IPv4Network | IPv6Network], NoDecode] = Field(
        default_factory=list,
        description="CIDRs of proxies whose X-Forwarded-For names the client, separated by "
        "commas (empty: the header is ignored, the client is the connection's address)",
    )
    proxy_protocol: bool = Field(
        default=False,
        description="read a PROXY protocol v2 header on the public listener from senders "
        "in trusted_proxies (the client's address; from anyone else it is never read)",
    )
    max_peers: int = Field(default=64, ge=1, le=10_000, description="size of the peer table")
    drain_timeout_seconds: float = Field(
        default=30.0,
        gt=0,
        le=3_600,
        description="on SIGTERM: in-flight work and hand-offs finish within this; "
        "a second signal ends the drain at once",
    )
    termination_settle_seconds: float = Field(
        default=2.0,
        ge=0,
        le=30,
        description="on SIGTERM while serving: readiness goes false at once, but work is "
        "still taken this long before the drain starts (clients following readiness "
        "move on first)",
    )
    log_level: str = Field(
        default="INFO",
        pattern=r"^(DEBUG|INFO|WARNING|ERROR|CRITICAL)$",
        description="DEBUG, INFO, WARNING, ERROR or CRITICAL",
    )

    gossip_origin_fanout: int = Field(
        default=32, ge=1, le=256, description="peers told first-hand of our own announcements"
    )
    gossip_fanout: int = Field(  # docs/gossip.md: why 5 and 10
        default=5, ge=1, le=32, description="peers a received announcement is forwarded to"
    )
    gossip_hop_limit: int = Field(
        default=10, ge=1, le=limits.HOP_LIMIT_MAX, description="hops an announcement travels"
    )
    provider_ttl_seconds: int = Field(
        default=3_600,
        ge=10,
        le=int(limits.PROVIDER_TTL_MAX_SECONDS),
        description="lifetime of our provider records (re-announced before they expire)",
    )
    liveness_interval_seconds: float = Field(
        default=5.0, gt=0, le=600, description="between membership rounds (hello, liveness)"
    )
    sync_interval_seconds: float = Field(
        default=10.0, gt=0, le=3_600, description="between anti-entropy pulls of a peer's log"
    )
    peer_timeout_seconds: float = Field(
        default=3.0, gt=0, le=120, description="for one request to a peer"
    )
    fetch_timeout_seconds: float = Field(
        default=30.0, gt=0, le=3_600, description="for one content transfer from a provider"
    )
    client_connection_limit: int = Field(
        default=100,
        ge=1,
        le=10_000,
        description="concurrent outgoing connections (8 per peer at most)",
    )
    replication_factor: int = Field(
        default=3,
        ge=1,
        le=64,
        description="copies of each package the fleet keeps (capped at the fleet's size)",
    )
    min_in_sync: int = Field(
        default=2,
        ge=1,
        le=64,
        description="nodes that hold a package's bytes before its publish is answered 201",
    )
    repair_interval_seconds: float = Field(
        default=10.0, gt=0, le=3_600, description="between passes of the repairer"
    )

    @field_validator("bootstrap_peers", "peer_networks", "trusted_proxies", mode="before")
    @classmethod
    def _split_commas(cls, value: Any) -> Any:
        if isinstance(value, str):
            return [part.strip() for part in value.split(",") if part.strip()]
        return value

    @model_validator(mode="after")
    def _reachable(self) -> NodeSettings:
        if self.advertise_url is None and self.host in ("0.0.0.0", "::", ""):  # noqa: S104
            raise ValueError("listening on all addresses needs advertise_url (the URL peers use)")
        if (self.tls_cert_file is None) != (self.tls_key_file is None):
            raise ValueError("tls_cert_file and tls_key_file go together")
        if self.proxy_protocol and not self.trusted_proxies:
            raise ValueError("proxy_protocol needs trusted_proxies (whose header to believe)")
        if self.proxy_protocol and self.serves_tls:
            raise ValueError("proxy_protocol with TLS on the node is not supported")
        if self.port == self.private_port != 0 and self.host == self.listen_private_host:
            raise ValueError("port and private_port must differ (two listeners)")
        return self

    @property
    def serves_tls(self) -> bool:
        """Whether the public listener speaks HTTPS."""
        return self.tls_cert_file is not None

    @property
    def listen_private_host(self) -> str:
        """Where the private listener binds: `private_host`, else the public `host`."""
        return self.host if self.private_host is None else self.private_host

    @property
    def source_host(self) -> str | None:
        """The address our calls to peers leave from: the public listener's, when it is one
        IP literal other than the defaults (all addresses, 127.0.0.1, ::1). Peers then see
        us at the address we listen and advertise, so their allowed networks and bans of
        it apply to our calls too (on a machine with several addresses, as the local
        cluster's loopback pod IPs, the kernel would otherwise pick one)."""
        try:
            address = ipaddress.ip_address(self.host)
        except ValueError:
            return None
        if address.is_unspecified or str(address) in ("127.0.0.1", "::1"):
            return None
        return str(address)

    @property
    def public_url(self) -> str:
        """The base URL peers reach us at (IPv6 hosts bracketed)."""
        if self.advertise_url:
            return self.advertise_url
        host = f"[{self.host}]" if ":" in self.host else self.host
        scheme = "https" if self.serves_tls else "http"
        return f"{scheme}://{host}:{self.port}"

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        # The CLI source, when the CLI passes one, comes before all of these.
        return (init_settings, env_settings, ConfigFileSource(settings_cls))
