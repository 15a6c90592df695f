"""Fleet-policy tuning (`MARKETPLACE_OPERATOR_POLICY_*`), validated once at startup."""

from __future__ import annotations

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict


class PolicySettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="MARKETPLACE_OPERATOR_POLICY_", extra="forbid")

    enabled: bool = Field(
        default=True,
        description="Run fleet policy (push, ConfigMap, auto bans); off leaves policy to others.",
    )
    gather_seconds: float = Field(
        default=0.005, ge=0, le=5, description="Wait after a first change to gather more."
    )
    min_interval_seconds: float = Field(
        default=0.1, ge=0, le=60, description="Minimum time between two pushes to one fleet."
    )
    parallelism: int = Field(default=64, ge=1, le=1024, description="Nodes pushed at once.")
    attempts: int = Field(default=4, ge=1, le=20, description="Attempts per node per push.")
    retry_base_seconds: float = Field(default=0.05, gt=0, le=10)
    retry_max_seconds: float = Field(default=1.0, gt=0, le=60)
    retry_round_seconds: float = Field(
        default=1.0, gt=0, le=600, description="Next round after a node did not acknowledge."
    )
    collect_seconds: float = Field(
        default=2.0, gt=0, le=3_600, description="Collect nodes' local bans."
    )
    autoban_threshold: int = Field(
        default=1, ge=1, le=1_000, description="Nodes that must ban a peer for a fleet ban."
    )
    autoban_capacity: int = Field(default=2_000, ge=1, le=2_000)
    autoban_max_ttl_seconds: float = Field(default=86_400, gt=0, le=31_536_000)
