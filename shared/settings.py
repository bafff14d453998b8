"""Settings of every Hoist service, read from the environment (prefix ``HOIST_``).

One settings class serves all four services because they share the same plumbing (NATS,
PostgreSQL, HTTP, auth, logs); what differs per service (its HTTP port, its database schema)
comes from the service's own spec, not from here.

Groups are nested models, and the first ``_`` after the prefix separates the group from the
field, so the names stay short and flat as operators expect::

    HOIST_NATS_URL=nats://nats:4222           -> settings.nats.url
    HOIST_DATABASE_URL=postgresql+asyncpg://... -> settings.database.url
    HOIST_DATABASE_POOL_SIZE=20               -> settings.database.pool_size
    HOIST_AUTH_TOKENS=tok1,tok2               -> settings.auth.tokens

Secrets are ``SecretStr``: they print as ``**********`` in logs, reprs and API answers.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Literal

from pydantic import BaseModel, Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

LogLevel = Literal["DEBUG", "INFO", "WARNING", "ERROR"]


def _split_list(value: object) -> object:
    """Accept ``a,b`` as well as a JSON list: a comma list is what people type in a shell."""
    if isinstance(value, str):
        text = value.strip()
        if text.startswith("["):
            import json

            return json.loads(text)
        return [item.strip() for item in text.split(",") if item.strip()]
    return value


class NatsSettings(BaseModel):
    """Connection to NATS and the shape of Hoist's JetStream streams."""

    url: str = Field(
        "nats://127.0.0.1:4222",
        description="Comma-separated NATS server URLs.",
    )
    prefix: str = Field(
        "hoist",
        pattern=r"^[a-z][a-z0-9-]{0,30}$",
        description="Root token of every subject and stream name; lets several Hoist "
        "installations share one NATS account without seeing each other's events.",
    )
    user: str | None = Field(None, description="NATS user (with HOIST_NATS_PASSWORD).")
    password: SecretStr | None = Field(None, description="NATS password.")
    token: SecretStr | None = Field(None, description="NATS authentication token.")
    creds_file: Path | None = Field(None, description="NATS credentials (JWT + nkey) file.")
    tls_ca_file: Path | None = Field(None, description="CA bundle to verify the server with.")
    connect_timeout: float = Field(5.0, gt=0, description="Seconds per connection attempt.")
    reconnect_wait: float = Field(2.0, gt=0, description="Seconds between reconnect attempts.")
    stream_replicas: int = Field(1, ge=1, le=5, description="JetStream replicas (clusters: 3).")
    stream_max_age_days: float = Field(
        14, gt=0, description="How long stored events are kept (dead letters: 30 days)."
    )
    duplicate_window_seconds: float = Field(
        900,
        gt=0,
        description="JetStream de-duplicates a message id seen within this window; a "
        "service that crashes and republishes its outbox within it sends nothing twice.",
    )

    @property
    def servers(self) -> list[str]:
        return [u.strip() for u in self.url.split(",") if u.strip()]


class DatabaseSettings(BaseModel):
    """PostgreSQL; every service owns one schema in the same database (or its own DB)."""

    url: SecretStr = Field(
        SecretStr("postgresql+asyncpg://hoist@127.0.0.1:5432/hoist"),
        description="SQLAlchemy URL; postgresql:// is rewritten to postgresql+asyncpg://.",
    )
    pool_size: int = Field(10, ge=1, le=200, description="Connections kept open per process.")
    max_overflow: int = Field(10, ge=0, le=200, description="Extra connections under load.")
    pool_timeout: float = Field(10.0, gt=0, description="Seconds to wait for a free connection.")
    connect_timeout: float = Field(5.0, gt=0, description="Seconds per connection attempt.")
    statement_timeout_ms: int = Field(
        30_000, ge=0, description="PostgreSQL statement_timeout; 0 = none."
    )
    migrate_on_start: bool = Field(
        True, description="Apply the service's Alembic migrations before serving."
    )

    @field_validator("url", mode="before")
    @classmethod
    def _asyncpg_driver(cls, value: object) -> object:
        raw = value.get_secret_value() if isinstance(value, SecretStr) else value
        if isinstance(raw, str):
            for plain in ("postgresql://", "postgres://"):
                if raw.startswith(plain):
                    return "postgresql+asyncpg://" + raw[len(plain) :]
        return value


class HttpSettings(BaseModel):
    host: str = Field("127.0.0.1", description="Address to listen on (0.0.0.0 in a pod).")
    port: int | None = Field(None, ge=1, le=65535, description="Default: the service's port.")
    root_path: str = Field("", description="Set when a proxy serves Hoist under a sub-path.")
    shutdown_grace_seconds: float = Field(
        25.0, gt=0, description="Time in-flight requests and messages get after SIGTERM."
    )
    max_body_bytes: int = Field(
        16 * 1024 * 1024,
        ge=1024,
        le=1024 * 1024 * 1024,
        description="Largest request body (413 beyond it, before it is read); the default "
        "fits twice the largest body the API accepts (a plan naming 20,000 VMs).",
    )


class AuthSettings(BaseModel):
    tokens: Annotated[list[SecretStr], NoDecode] = Field(
        default_factory=list,
        description="Bearer tokens accepted on every API route (comma-separated).",
    )
    disabled: bool = Field(
        False, description="Serve the API without authentication; explicit, never a default."
    )
    static: bool = Field(
        True,
        description="Accept the static HOIST_AUTH_TOKENS (each may do everything): for "
        "development; the chart turns them off.",
    )
    kubernetes: bool = Field(
        False,
        description="Check bearer tokens with a TokenReview and each request with a "
        "SubjectAccessReview on hoist.io resources, in the cluster of HOIST_KUBE_*.",
    )
    cache_seconds: float = Field(
        10.0,
        ge=0,
        le=300,
        description="How long a TokenReview or SubjectAccessReview answer is reused (0: never).",
    )

    _split = field_validator("tokens", mode="before")(classmethod(lambda cls, v: _split_list(v)))


class LogSettings(BaseModel):
    level: LogLevel = Field("INFO", description="DEBUG, INFO, WARNING or ERROR.")
    format: Literal["json", "text"] = Field(
        "json", description="json: one object per line; text: for a terminal."
    )

    @field_validator("level", mode="before")
    @classmethod
    def _upper(cls, value: object) -> object:
        return value.upper() if isinstance(value, str) else value


class ConsumerSettings(BaseModel):
    """Defaults for JetStream pull consumers; a subscription may override them."""

    concurrency: int = Field(8, ge=1, le=1024, description="Messages handled at once.")
    max_deliveries: int = Field(
        5, ge=1, le=100, description="Attempts before a message goes to the dead-letter subject."
    )
    backoff_seconds: Annotated[list[float], NoDecode] = Field(
        default_factory=lambda: [1.0, 5.0, 15.0, 60.0],
        description="Delay before attempt n+1 (the last value repeats).",
    )
    ack_wait_seconds: float = Field(
        30.0, gt=0, description="A handler that runs longer is kept alive with in-progress acks."
    )

    _split = field_validator("backoff_seconds", mode="before")(
        classmethod(lambda cls, v: _split_list(v))
    )


class OutboxSettings(BaseModel):
    poll_seconds: float = Field(1.0, gt=0, description="Safety net; commits wake the relay.")
    batch_size: int = Field(200, ge=1, le=10_000, description="Events published per round.")
    retention_hours: float = Field(24.0, gt=0, description="Published rows kept this long.")


class KubeSettings(BaseModel):
    """The Kubernetes cluster Hoist runs in: where provider Secrets live, and the target
    that a ``kubevirt`` provider without a URL means."""

    kubeconfig: Path | None = Field(
        None, description="Kubeconfig file; unset: the pod's in-cluster service account."
    )
    context: str | None = Field(None, description="Kubeconfig context; unset: its current one.")
    namespace: str = Field(
        "hoist",
        pattern=r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$",
        description="Hoist's own namespace: provider credentials are kept as Secrets here.",
    )


class InventorySettings(BaseModel):
    """How the inventory service collects from providers."""

    refresh_seconds: float = Field(
        10.0,
        gt=0,
        description="Interval of incremental refreshes (oVirt events, OpenStack changes-since).",
    )
    full_resync_minutes: float = Field(
        60.0, gt=0, description="A full reload this often, catching whatever increments miss."
    )
    workers: int = Field(
        16, ge=2, le=256, description="Threads for the blocking SDK calls of all providers."
    )
    calls_per_provider: int = Field(
        4,
        ge=1,
        le=64,
        description="Blocking calls one provider may run at once, so one slow "
        "provider never takes every worker.",
    )
    call_timeout_seconds: float = Field(
        120.0, gt=0, description="A blocking SDK call running longer marks the provider failed."
    )
    connect_timeout_seconds: float = Field(
        10.0, gt=0, description="Connection tests and TLS probes give up after this."
    )
    retry_max_seconds: float = Field(
        60.0, gt=0, description="Longest wait before retrying a provider that failed."
    )


class ProgressSettings(BaseModel):
    """How the progress service scrapes populator pods and publishes their progress."""

    scrape_seconds: float = Field(
        5.0, gt=0, le=300, description="Each populator pod's metrics are read this often."
    )
    timeout_seconds: float = Field(
        3.0, gt=0, le=60, description="A scrape that takes longer counts as failed."
    )
    concurrency: int = Field(
        64, ge=1, le=4096, description="Scrapes in flight at once, per replica."
    )
    via: Literal["auto", "direct", "proxy"] = Field(
        "auto",
        description="How pods are reached: direct (pod IP), proxy (the API server's pod "
        "proxy), auto (direct in the cluster Hoist runs in, proxy in a remote one).",
    )
    flush_seconds: float = Field(
        0.5, gt=0, le=30, description="Samples are written in one statement this often."
    )
    publish_min_seconds: float = Field(
        2.0, ge=0, description="At most one disk (and VM) progress event per disk this often."
    )
    history_seconds: float = Field(
        30.0, gt=0, description="One history point per disk this often (charts)."
    )
    history_points: int = Field(
        2000, ge=10, le=100_000, description="History points kept per disk (oldest dropped)."
    )
    retention_days: float = Field(
        30.0,
        gt=0,
        description="Disks finished longer ago than this are forgotten, with their history "
        "(the planner keeps each migration's outcome and bytes).",
    )
    heartbeat_seconds: float = Field(
        1.0, gt=0, description="Replicas renew their entry in the NATS KV bucket this often."
    )
    replica_ttl_seconds: float | None = Field(
        None,
        gt=0,
        description="A replica not heard of this long is dead and its pods are taken "
        "over; default: one scrape interval.",
    )
    watch_pods: bool = Field(
        True,
        description="Also discover populator pods by watching labelled pods in the "
        "cluster Hoist runs in (finds them again after a restart).",
    )


class PlannerSettings(BaseModel):
    """How the planner reaches the inventory it validates plans against, and its defaults."""

    inventory_url: str = Field(
        "http://127.0.0.1:8101",
        pattern=r"^https?://",
        description="Base URL of the inventory service's API.",
    )
    inventory_token: SecretStr | None = Field(
        None, description="Bearer token for the inventory API; unset: the first HOIST_AUTH_TOKENS."
    )
    inventory_token_file: Path | None = Field(
        None,
        description="A file holding the bearer token for the inventory API, read again when "
        "it changes (a projected ServiceAccount token rotates); wins over inventory_token.",
    )
    inventory_ca_file: Path | None = Field(
        None, description="CA bundle to verify an https inventory URL with (default: system)."
    )
    inventory_timeout_seconds: float = Field(
        15.0, gt=0, le=300, description="One inventory request gives up after this."
    )
    inventory_concurrency: int = Field(
        16, ge=1, le=256, description="Inventory requests in flight at once per validation."
    )
    revalidate_seconds: float = Field(
        30.0,
        gt=0,
        description="Plans whose providers changed in the inventory are validated again "
        "at most this often.",
    )
    progress_flush_seconds: float = Field(
        1.0, gt=0, le=60, description="Progress samples are written in one batch this often."
    )
    started_event_bytes: int = Field(
        256 * 1024,
        ge=4096,
        le=8 * 1024 * 1024,
        description="Largest plan.started event; a bigger plan is published in parts "
        "(NATS refuses messages over its max_payload, 1 MiB by default).",
    )
    max_disks_in_flight: int = Field(
        10, ge=1, le=10_000, description="Default limit of disks copied at once per plan."
    )
    max_disks_in_flight_per_source: int = Field(
        20,
        ge=1,
        le=10_000,
        description="Default limit of disks copied at once from one source provider.",
    )
    max_vms_in_flight: int = Field(
        20,
        ge=1,
        le=10_000,
        description="Default limit of VMs in flight at once per plan (admitted before their "
        "source is touched, until their target VM exists).",
    )


class OrchestratorSettings(BaseModel):
    """The orchestrator (``HOIST_ORCHESTRATOR_*``): the per-VM pipelines and the populator
    controller process."""

    workers: int = Field(
        16, ge=1, le=1024, description="VM pipeline steps run at once by one replica."
    )
    poll_seconds: float = Field(
        2.0, gt=0, le=60, description="How often a waiting step looks at the cluster again."
    )
    transfer_poll_seconds: float = Field(
        10.0,
        gt=0,
        le=600,
        description="How often DiskTransfer looks at its disks' populators while they copy: "
        "a disk's end wakes it at once (the controller's population.ended), so this only "
        "refreshes the step's progress and bounds a lost notice.",
    )
    lease_seconds: float = Field(
        60.0,
        ge=5,
        description="A replica holds a VM this long per step; a crashed one's VMs are taken "
        "over after it.",
    )
    power_off_timeout_seconds: float = Field(
        300.0, gt=0, description="Graceful shutdown of a source VM; then it is forced off."
    )
    source_timeout_seconds: float = Field(
        60.0, gt=0, description="One call to a source provider (oVirt engine, OpenStack API)."
    )
    snapshot_timeout_seconds: float = Field(
        3600.0,
        gt=0,
        description="OpenStack: waiting for a snapshot, volume or image to become ready.",
    )
    transfer_timeout_hours: float = Field(
        72.0, gt=0, description="A disk that has not finished copying after this fails."
    )
    precopy_interval_seconds: float | None = Field(
        None,
        gt=0,
        description="Overrides every warm plan's precopyIntervalMinutes (tests, benchmarks "
        "and demos that cannot wait a minute between precopies); unset: the plan's.",
    )
    keep_failed: bool = Field(
        False,
        description="Keep a failed VM's claims and VirtualMachine for inspection (a cancel "
        "always removes them).",
    )
    populator_image: str = Field(
        "ghcr.io/hoist-io/hoist:0.1.0",
        description="Image of the populator pods (the one Hoist image holds both populators).",
    )
    populator_pull_policy: Literal["Always", "IfNotPresent", "Never"] = Field(
        "IfNotPresent", description="imagePullPolicy of populator pods."
    )
    populator_cpu_request: str = Field("500m", description="CPU request of a populator pod.")
    populator_cpu_limit: str = Field("2", description="CPU limit of a populator pod.")
    populator_memory_request: str = Field("256Mi", description="Memory request.")
    populator_memory_limit: str = Field("1Gi", description="Memory limit.")
    populator_uid: int = Field(107, ge=1, description="Non-root uid populator pods run as.")
    populator_max_recreations: int = Field(
        3,
        ge=0,
        le=100,
        description="A failed populator pod is recreated this often, then the disk fails.",
    )
    converter_image: str = Field(
        "ghcr.io/hoist-io/hoist-converter:0.1.0",
        description="Image of ConvertGuest's conversion pods: ``python -m services.converter`` "
        "with virt-v2v (virt-v2v-in-place), libguestfs and nbdkit (not in the Hoist image).",
    )
    converter_pull_policy: Literal["Always", "IfNotPresent", "Never"] = Field(
        "IfNotPresent", description="imagePullPolicy of conversion pods."
    )
    converter_cpu_limit: str = Field("2", description="CPU limit of a conversion pod.")
    converter_memory_request: str = Field(
        "1Gi", description="Memory request of a conversion pod (libguestfs's appliance)."
    )
    converter_memory_limit: str = Field(
        "4Gi", description="Memory limit of a conversion pod (the appliance takes 2.5 GiB)."
    )
    converter_timeout_minutes: float = Field(
        60.0,
        gt=0,
        description="ConvertGuest fails (ConversionTimeout) when its pod has not ended by "
        "then (an emulated appliance, without KVM, is several times slower).",
    )
    converter_accel: Literal["auto", "kvm", "tcg"] = Field(
        "auto",
        description="How libguestfs's appliance runs in conversion pods: auto uses TCG on "
        "nodes whose KVM cannot run a stock kernel (kvm_pvm) or have no /dev/kvm.",
    )
    converter_overlay: bool = Field(
        True,
        description="Convert on qcow2 overlays and write back only a successful conversion "
        "(a failed one leaves the volumes as copied); false: convert the volumes directly.",
    )
    hook_cpu_request: str = Field("100m", description="CPU request of a hook's pod.")
    hook_memory_request: str = Field("150Mi", description="Memory request of a hook's pod.")
    hook_cpu_limit: str = Field("1", description="CPU limit of a hook's pod.")
    hook_memory_limit: str = Field("1Gi", description="Memory limit of a hook's pod.")
    controller_resync_seconds: float = Field(
        30.0, gt=0, description="Populator controller: every claim is looked at again this often."
    )
    controller_workers: int = Field(
        8, ge=1, le=256, description="Populator controller: claims reconciled at once."
    )
    controller_port: int = Field(
        8105, ge=1, le=65535, description="Populator controller: /healthz, /readyz, /metrics."
    )


def _service_url(port: int, service: str) -> str:
    """A service's base URL field (pydantic's ``Field`` stands for its value's type)."""
    return Field(
        f"http://127.0.0.1:{port}", pattern=r"^https?://", description=f"The {service}'s base URL."
    )


class ConsoleSettings(BaseModel):
    """The web console (``services.console``): where it forwards each API's paths, so the
    browser reaches every API on the console's own origin."""

    inventory_url: str = _service_url(8101, "inventory")
    planner_url: str = _service_url(8102, "planner")
    orchestrator_url: str = _service_url(8103, "orchestrator")
    progress_url: str = _service_url(8104, "progress service")
    ca_file: Path | None = Field(
        None, description="CA bundle to verify https service URLs with; unset: the system's."
    )
    timeout_seconds: float = Field(
        30.0, gt=0, le=600, description="One forwarded call (event streams excepted)."
    )


class HoistSettings(BaseSettings):
    """Everything a Hoist service reads from its environment."""

    model_config = SettingsConfigDict(
        env_prefix="HOIST_",
        env_nested_delimiter="_",
        env_nested_max_split=1,
        extra="ignore",
        case_sensitive=False,
    )

    nats: NatsSettings = Field(default_factory=NatsSettings)
    database: DatabaseSettings = Field(default_factory=DatabaseSettings)
    http: HttpSettings = Field(default_factory=HttpSettings)
    auth: AuthSettings = Field(default_factory=AuthSettings)
    log: LogSettings = Field(default_factory=LogSettings)
    consumer: ConsumerSettings = Field(default_factory=ConsumerSettings)
    outbox: OutboxSettings = Field(default_factory=OutboxSettings)
    kube: KubeSettings = Field(default_factory=KubeSettings)
    inventory: InventorySettings = Field(default_factory=InventorySettings)
    progress: ProgressSettings = Field(default_factory=ProgressSettings)
    planner: PlannerSettings = Field(default_factory=PlannerSettings)
    orchestrator: OrchestratorSettings = Field(default_factory=OrchestratorSettings)
    console: ConsoleSettings = Field(default_factory=ConsoleSettings)
