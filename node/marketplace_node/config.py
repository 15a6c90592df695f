"""Node configuration: pydantic-settings, env prefix `MARKETPLACE_NODE_` (nested delimiter `__`).

Precedence (highest first): command-line flags, environment variables, the
config file (`--config`, YAML or JSON), defaults. Built once by the CLI and
passed down; nothing reads the environment anywhere else.
"""

from __future__ import annotations

from ipaddress import IPv4Network, IPv6Network
from pathlib import Path
from typing import Annotated, Any

from pydantic import Field, SecretStr, field_validator, model_validator
from pydantic_settings import (
    BaseSettings,
    NoDecode,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    YamlConfigSettingsSource,
)

from marketplace_node import limits


class NodeSettings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix="MARKETPLACE_NODE_", env_nested_delimiter="__", extra="forbid"
    )

    host: str = Field(default="127.0.0.1", max_length=253)
    port: int = Field(default=7070, ge=0, le=65_535)
    advertise_url: str | None = Field(
        default=None,
        max_length=limits.ADDRESS_MAX,
        description="URL peers use; default http://host:port",
    )
    data_dir: Path = Path("./marketplace-data")
    identity_file: Path | None = None
    admin_token_file: Path | None = None
    admin_token: SecretStr | None = None  # for tests and local runs; the file wins
    policy_dir: Path | None = None
    fleet: str = Field(default="default", max_length=63)
    bootstrap_peers: Annotated[list[str], NoDecode] = Field(default_factory=list)
    # Where peer addresses may point: with networks set, only IP literals inside them
    # are called (no DNS), so a peer cannot aim us at another service (SSRF).
    peer_networks: Annotated[list[IPv4Network | IPv6Network], NoDecode] = Field(
        default_factory=list
    )
    max_peers: int = Field(default=64, ge=1, le=10_000)
    drain_timeout_seconds: float = Field(default=30.0, gt=0, le=3_600)
    log_level: str = Field(default="INFO", pattern=r"^(DEBUG|INFO|WARNING|ERROR|CRITICAL)$")

    gossip_origin_fanout: int = Field(default=32, ge=1, le=256)
    gossip_fanout: int = Field(default=5, ge=1, le=32)  # docs/gossip.md: why 5 and 10
    gossip_hop_limit: int = Field(default=10, ge=1, le=limits.HOP_LIMIT_MAX)
    provider_ttl_seconds: int = Field(default=3_600, ge=10, le=int(limits.PROVIDER_TTL_MAX_SECONDS))
    liveness_interval_seconds: float = Field(default=5.0, gt=0, le=600)
    sync_interval_seconds: float = Field(default=10.0, gt=0, le=3_600)
    peer_timeout_seconds: float = Field(default=3.0, gt=0, le=120)
    fetch_timeout_seconds: float = Field(default=30.0, gt=0, le=3_600)
    client_connection_limit: int = Field(default=100, ge=1, le=10_000)

    @field_validator("bootstrap_peers", "peer_networks", mode="before")
    @classmethod
    def _split_commas(cls, value: Any) -> Any:
        if isinstance(value, str):
            return [part.strip() for part in value.split(",") if part.strip()]
        return value

    @model_validator(mode="after")
    def _reachable(self) -> NodeSettings:
        if self.advertise_url is None and self.host in ("0.0.0.0", "::", ""):  # noqa: S104
            raise ValueError("listening on all addresses needs advertise_url (the URL peers use)")
        return self

    @property
    def public_url(self) -> str:
        """The base URL peers reach us at (IPv6 hosts bracketed)."""
        if self.advertise_url:
            return self.advertise_url
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}"

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        return (init_settings, env_settings, YamlConfigSettingsSource(settings_cls))


def load(config_file: Path | None, overrides: dict[str, Any]) -> NodeSettings:
    """Settings from flags (`overrides`, None values dropped), env, then `config_file`."""
    flags = {key: value for key, value in overrides.items() if value is not None}
    if config_file is None:
        return NodeSettings(**flags)
    with_file = type(
        "FileNodeSettings",
        (NodeSettings,),
        {"model_config": {**NodeSettings.model_config, "yaml_file": config_file}},
    )
    settings: NodeSettings = with_file(**flags)
    return NodeSettings.model_validate(settings.model_dump())
