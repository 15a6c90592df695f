"""The subset of the Kubernetes Pod API the local kubelet reads, as pydantic models.

Parsed from the raw JSON the API server sends (camelCase); unknown fields are
ignored so that newer API servers never break the kubelet.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field
from pydantic.alias_generators import to_camel


class _Api(BaseModel):
    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, extra="ignore")


class ObjectMeta(_Api):
    name: str = ""
    namespace: str = ""
    uid: str = ""
    resource_version: str = ""
    labels: dict[str, str] = Field(default_factory=dict)
    annotations: dict[str, str] = Field(default_factory=dict)
    deletion_timestamp: str | None = None
    deletion_grace_period_seconds: int | None = None


class FieldRef(_Api):
    field_path: str


class ResourceFieldRef(_Api):
    container_name: str = ""
    resource: str
    divisor: str | int | None = None


class KeyRef(_Api):
    name: str = ""
    key: str
    optional: bool = False


class EnvVarSource(_Api):
    field_ref: FieldRef | None = None
    resource_field_ref: ResourceFieldRef | None = None
    secret_key_ref: KeyRef | None = None
    config_map_key_ref: KeyRef | None = None


class EnvVar(_Api):
    name: str
    value: str | None = None
    value_from: EnvVarSource | None = None


class NameRef(_Api):
    name: str = ""
    optional: bool = False


class EnvFromSource(_Api):
    prefix: str = ""
    secret_ref: NameRef | None = None
    config_map_ref: NameRef | None = None


class VolumeMount(_Api):
    name: str
    mount_path: str
    sub_path: str = ""
    read_only: bool = False


class HttpHeader(_Api):
    name: str
    value: str


class HttpGet(_Api):
    path: str = "/"
    port: int | str
    host: str = ""
    scheme: str = "HTTP"
    http_headers: list[HttpHeader] = Field(default_factory=list)


class TcpSocket(_Api):
    port: int | str
    host: str = ""


class ExecAction(_Api):
    command: list[str] = Field(default_factory=list)


class Handler(_Api):
    """A probe's or a lifecycle hook's action."""

    exec: ExecAction | None = None
    http_get: HttpGet | None = None
    tcp_socket: TcpSocket | None = None


class Probe(Handler):
    initial_delay_seconds: int = 0
    period_seconds: int = 10
    timeout_seconds: int = 1
    success_threshold: int = 1
    failure_threshold: int = 3


class Lifecycle(_Api):
    pre_stop: Handler | None = None


class ContainerPort(_Api):
    name: str = ""
    container_port: int
    protocol: str = "TCP"


class Resources(_Api):
    limits: dict[str, Any] = Field(default_factory=dict)
    requests: dict[str, Any] = Field(default_factory=dict)


class SecurityContext(_Api):
    """What a pod or container asks of the runtime's isolation; ours enforces none of it
    (`podspec.unenforced_security` names what it ignores)."""

    run_as_user: int | None = None
    run_as_group: int | None = None
    run_as_non_root: bool | None = None
    fs_group: int | None = None  # pod level only
    read_only_root_filesystem: bool | None = None
    allow_privilege_escalation: bool | None = None
    capabilities: dict[str, list[str]] | None = None
    seccomp_profile: dict[str, Any] | None = None
    app_armor_profile: dict[str, Any] | None = None
    se_linux_options: dict[str, Any] | None = None


class Container(_Api):
    name: str
    image: str = ""
    command: list[str] = Field(default_factory=list)
    args: list[str] = Field(default_factory=list)
    working_dir: str = ""
    env: list[EnvVar] = Field(default_factory=list)
    env_from: list[EnvFromSource] = Field(default_factory=list)
    ports: list[ContainerPort] = Field(default_factory=list)
    volume_mounts: list[VolumeMount] = Field(default_factory=list)
    readiness_probe: Probe | None = None
    liveness_probe: Probe | None = None
    startup_probe: Probe | None = None
    lifecycle: Lifecycle | None = None
    resources: Resources = Field(default_factory=Resources)
    security_context: SecurityContext | None = None


class KeyToPath(_Api):
    key: str
    path: str
    mode: int | None = None


class SecretVolume(_Api):
    secret_name: str
    items: list[KeyToPath] = Field(default_factory=list)
    default_mode: int | None = None
    optional: bool = False


class ConfigMapVolume(_Api):
    name: str
    items: list[KeyToPath] = Field(default_factory=list)
    default_mode: int | None = None
    optional: bool = False


class DownwardApiFile(_Api):
    path: str
    field_ref: FieldRef | None = None
    resource_field_ref: ResourceFieldRef | None = None
    mode: int | None = None


class DownwardApiVolume(_Api):
    items: list[DownwardApiFile] = Field(default_factory=list)
    default_mode: int | None = None


class ServiceAccountTokenProjection(_Api):
    audience: str = ""
    expiration_seconds: int = 3600
    path: str


class ProjectedSecret(_Api):
    name: str
    items: list[KeyToPath] = Field(default_factory=list)
    optional: bool = False


class VolumeProjection(_Api):
    secret: ProjectedSecret | None = None
    config_map: ProjectedSecret | None = None
    downward_api: DownwardApiVolume | None = Field(default=None, alias="downwardAPI")
    service_account_token: ServiceAccountTokenProjection | None = None


class ProjectedVolume(_Api):
    sources: list[VolumeProjection] = Field(default_factory=list)
    default_mode: int | None = None


class EmptyDirVolume(_Api):
    medium: str = ""


class HostPathVolume(_Api):
    path: str
    type: str = ""


class PvcVolume(_Api):
    claim_name: str
    read_only: bool = False


class Volume(_Api):
    name: str
    secret: SecretVolume | None = None
    config_map: ConfigMapVolume | None = None
    downward_api: DownwardApiVolume | None = Field(default=None, alias="downwardAPI")
    projected: ProjectedVolume | None = None
    empty_dir: EmptyDirVolume | None = None
    host_path: HostPathVolume | None = None
    persistent_volume_claim: PvcVolume | None = None


class ReadinessGate(_Api):
    condition_type: str


class PodSpec(_Api):
    node_name: str = ""
    containers: list[Container]
    init_containers: list[Container] = Field(default_factory=list)
    volumes: list[Volume] = Field(default_factory=list)
    restart_policy: str = "Always"
    termination_grace_period_seconds: int = 30
    host_network: bool = False
    readiness_gates: list[ReadinessGate] = Field(default_factory=list)
    service_account_name: str = "default"
    hostname: str = ""
    subdomain: str = ""
    security_context: SecurityContext | None = None


class PodCondition(_Api):
    type: str
    status: str
    reason: str | None = None
    message: str | None = None
    last_transition_time: str | None = None
    last_probe_time: str | None = None


class PodIP(_Api):
    ip: str


class PodStatus(_Api):
    phase: str = "Pending"
    pod_ip: str | None = Field(default=None, alias="podIP")
    pod_ips: list[PodIP] = Field(default_factory=list, alias="podIPs")
    start_time: str | None = None
    conditions: list[PodCondition] = Field(default_factory=list)
    container_statuses: list[dict[str, Any]] = Field(default_factory=list)


class Pod(_Api):
    metadata: ObjectMeta
    spec: PodSpec
    status: PodStatus = Field(default_factory=PodStatus)

    @property
    def key(self) -> str:
        """`namespace/name`, for logs and indexes."""
        return f"{self.metadata.namespace}/{self.metadata.name}"
