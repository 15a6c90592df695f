"""Operator configuration: environment (`MARKETPLACE_OPERATOR_*`) and flags, validated once."""

from __future__ import annotations

from pydantic import Field, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

DEFAULT_NODE_IMAGE = "ghcr.io/marketplace-fleet/node:0.1.0"


class Settings(BaseSettings):
    """Built once in `__main__` and passed down; nothing reads the environment elsewhere."""

    model_config = SettingsConfigDict(
        env_prefix="MARKETPLACE_OPERATOR_", env_nested_delimiter="__", extra="forbid"
    )

    namespaces: list[str] = Field(
        default_factory=list,
        description="Namespaces to watch; empty with all_namespaces unset: 'default'.",
    )
    all_namespaces: bool = Field(default=False, description="Watch every namespace.")
    default_node_image: str = Field(default=DEFAULT_NODE_IMAGE, min_length=1, max_length=512)
    poll_interval_seconds: float = Field(
        default=5.0, gt=0, le=300, description="Resync of a node (changes arrive as watch events)."
    )
    startup_poll_interval_seconds: float = Field(
        default=0.5, gt=0, le=60, description="Admin status poll of a running node not yet joined."
    )
    polls_per_second: float = Field(
        default=20.0,
        gt=0,
        le=100_000,
        description="Status polls a second of joined nodes, at most, all together: with N "
        "nodes each is polled every max(poll_interval_seconds, N / this).",
    )
    startup_polls_per_second: float = Field(
        default=200.0,
        gt=0,
        le=100_000,
        description="Status polls a second of nodes running but not yet joined, at most, "
        "all together: with J of them each is polled every "
        "max(startup_poll_interval_seconds, J / this).",
    )
    status_writes_per_second: float = Field(
        default=100.0,
        gt=0,
        le=100_000,
        description="Paced status writes a second, at most, all together: a node's details "
        "(pod name and IP, messages) wait max(1 s, N / this) after its last status write and "
        "its peer list max(5 s, N / this); what users wait on (phase, a condition's status, "
        "the observed generation, the policy in force) is written at once.",
    )
    gate_poll_failures: int = Field(
        default=3,
        ge=1,
        le=100,
        description="Consecutive failed status polls before a joined node's gate turns off.",
    )
    gate_silence_seconds: float = Field(
        default=15.0,
        gt=0,
        le=600,
        description="Time without an answered status poll before a joined node's gate turns off.",
    )
    admin_timeout_seconds: float = Field(default=3.0, gt=0, le=60)
    admin_concurrency: int = Field(default=32, ge=1, le=1024)
    reconcile_concurrency: int = Field(
        default=128,
        ge=1,
        le=4096,
        description="Node passes in flight at once; the others wait for a turn. A pass "
        "holds its node's views, rendered objects and polled status while it awaits the "
        "API server or the node: a spec change to a whole fleet starts them all at once.",
    )
    # After a fleet's admin token changes, the one before is still tried for this long
    # (after a 401): nodes see the new Secret only on their kubelet's next volume sync.
    admin_token_overlap_seconds: float = Field(default=300.0, ge=0, le=86_400)
    api_timeout_seconds: float = Field(default=10.0, gt=0, le=300)
    api_check_seconds: float = Field(
        default=1.0,
        gt=0,
        le=300,
        description="Between two GET /readyz of the API server (marketplace_operator_api_ready).",
    )
    drain_poll_seconds: float = Field(default=0.5, gt=0, le=30)
    rollout_settle_seconds: float = Field(
        default=1.0,
        ge=0,
        le=60,
        description="Rollout: the longest an unready leaving pod waits to be dropped from "
        "its EndpointSlices before its drain (it moves on as soon as no slice lists it "
        "as ready; this bound applies when they still do, or cannot be read).",
    )
    rollout_interval_seconds: float = Field(
        default=0.25, gt=0, le=60, description="Rollout: re-plan interval while a step runs."
    )
    liveness_endpoint: str | None = Field(default="http://127.0.0.1:8080/healthz")
    metrics_address: str = Field(default="127.0.0.1")
    metrics_port: int = Field(default=9090, ge=0, le=65535, description="0 disables /metrics.")
    standalone: bool = Field(
        default=True,
        description="No peering. Set false (with kopf's peering CRDs installed) for standby HA.",
    )
    peering_name: str = Field(default="marketplace-operator", min_length=1, max_length=63)
    peering_priority: int | None = Field(
        default=None,
        ge=0,
        description="The highest live priority acts, the others stand by; unset: random.",
    )
    peering_lifetime_seconds: int = Field(
        default=60, ge=2, le=3600, description="How long a silent replica counts as alive."
    )
    log_level: str = Field(default="INFO", pattern="^(DEBUG|INFO|WARNING|ERROR)$")

    @model_validator(mode="after")
    def _one_scope(self) -> Settings:
        if self.all_namespaces and self.namespaces:
            raise ValueError("give namespaces or all_namespaces, not both")
        return self

    @property
    def watched_namespaces(self) -> list[str]:
        return self.namespaces or ([] if self.all_namespaces else ["default"])
