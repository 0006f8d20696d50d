"""Settings (environment, prefix INCIDENTFLOW_) and the integrations file, built once per process."""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
from collections.abc import Mapping
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Annotated, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from incidentflow.domain.events import Labels, Severity

SourceName = Literal[
    "elven",
    "sleuth",
    "uptrends",
    "flashduty-alert",
    "flashduty-change",
    "native",
    "cloudevents",
    "alertmanager",
    "pagerduty",
    "github",
    "gitlab",
]


CommaList = Annotated[tuple[str, ...], NoDecode]
"""A list setting, given in the environment as comma-separated values."""


class Settings(BaseSettings):
    """Process settings; every field can be set as INCIDENTFLOW_<NAME> in the environment."""

    model_config = SettingsConfigDict(env_prefix="INCIDENTFLOW_", frozen=True, extra="ignore")

    kafka_bootstrap: str = "127.0.0.1:9092"
    integrations_file: Path | None = None
    topic_namespace: str = Field(default="incidentflow", pattern=r"^[A-Za-z0-9._-]+$")
    """Prefix of every topic (`<namespace>.raw`, ...): lets several deployments share a cluster."""
    raw_topic: str | None = None
    """Read raw envelopes from this topic instead of `<namespace>.raw` (what `incidentflow replay` sets)."""
    partitions: int = Field(default=8, ge=1, le=1024)
    replication_factor: int = Field(default=1, ge=1)
    """Replicas of every topic the product creates: 1 on a single broker, 3 on a cluster."""
    min_insync_replicas: int | None = Field(default=None, ge=1)
    """`min.insync.replicas` of every topic the product creates (2 on a cluster of three, so that an
    acks=all write is on two brokers before it is acknowledged); unset keeps the broker's default."""

    gateway_host: str = "127.0.0.1"
    gateway_port: int = 8080
    max_body_bytes: int = Field(default=512 * 1024, ge=1)
    publish_timeout_seconds: float = Field(default=5.0, gt=0)
    """Longest the gateway waits for Kafka's acknowledgement before answering 503."""
    retry_after_seconds: int = 5
    max_labels: int = Field(default=50, ge=1, le=10000)
    """Most labels one event may carry, the integration's static labels included (Flashduty's own limit
    is 50); a webhook over it is answered 422. Keys are at most 128 characters, values 2,048."""
    trusted_proxies: CommaList = ()
    """CIDRs of reverse proxies whose X-Forwarded-For is believed."""

    app_id: str = "incidentflow"
    """Faust application id: consumer group and table names. Replay uses a new one."""
    web_host: str = "127.0.0.1"
    web_port: int = 6066
    store: str = "rocksdb://"
    data_dir: Path = Path(".data")
    max_events_per_aggregate: int = Field(default=256, ge=4)
    state_horizon_days: int = Field(default=90, ge=1, le=36500)
    """Days of event time the worker keeps what can no longer change: an incident's state after its final
    resolution, a change's after its change time (docs/semantics.md, "The state horizon")."""
    store_memory_mib: int = Field(default=256, ge=16)
    """RocksDB memory of a worker: one block cache for every table and partition, memtables charged to it."""
    session_timeout_seconds: float = Field(default=10.0, gt=0)
    """How long the group waits for a silent worker (its heartbeats) before giving its partitions away."""
    rebalance_timeout_seconds: float = Field(default=120.0, gt=0)
    """How long a rebalance waits for a live worker to finish its records in hand and rejoin. A worker
    dropped for being slow keeps writing for a moment while its partitions are already someone else's
    (late changelog and output records), so this is generous: a dead worker is found by its heartbeats."""
    stop_timeout_seconds: float = Field(default=8.0, gt=0)
    """How long a worker told to stop (SIGTERM, SIGINT) may take to stop cleanly before it exits anyway (a
    broker that is gone would hold it a minute and more); what it had not committed is handled again."""
    allow_upstream_drift: bool = False
    """Run the worker even when the installed faust-streaming, mode-streaming, aiokafka or rocksdict is not
    the code its runtime was written against (runtime/upstream.py); it then logs an error at start."""
    log_level: str = "info"
    cdevents_integration: str = Field(default="cdevents", pattern=r"^[A-Za-z0-9._-]{1,64}$")
    """The integration of CDEvents published straight to `<namespace>.cdevents`: part of their
    aggregate_id and change_id, as an integration's name is for the events of its webhooks."""
    cdevents_default_severity: Severity | None = None
    """The severity of the incidents CDEvents open on `<namespace>.cdevents` (CDEvents carry none)."""
    change_type_label: str = Field(default="change_type", min_length=1, max_length=128)
    """The label that names a change's kind on every source (`rollback`, `hotfix`, `revert`; another value, or
    none, is an ordinary deployment). The native `kind` field and CDEvents' `service.rolledback` win over it."""
    correlation_scope_labels: CommaList = ("service", "cluster", "host", "namespace", "app")
    """A change and an incident must share one of these labels with equal values (same on every worker)."""
    correlation_conflict_labels: CommaList = ("env", "environment", "region")
    """A pair whose values of one of these labels differ never correlates."""

    @field_validator("trusted_proxies", "correlation_scope_labels", "correlation_conflict_labels", mode="before")
    @classmethod
    def _split_commas(cls, value: object) -> object:
        if isinstance(value, str):
            return tuple(v.strip() for v in value.split(",") if v.strip())
        return value


class CorrelationWindow(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    lookback_minutes: float = Field(default=60, ge=0)
    lookahead_minutes: float = Field(default=5, ge=0)


class Integration(BaseModel):
    """One entry of the integrations file: a sender, its token and its defaults."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    name: str = Field(pattern=r"^[A-Za-z0-9._-]{1,64}$")
    source: SourceName
    token_sha256: str | None = Field(default=None, pattern=r"^[0-9a-f]{64}$")
    token: str | None = Field(default=None, min_length=16)
    revoked: bool = False
    labels: Labels = Field(default_factory=dict)
    default_severity: Severity | None = None
    allow_cidrs: tuple[str, ...] = ("0.0.0.0/0", "::/0")
    rate_limit_per_minute: int = Field(default=600, ge=1)
    hmac_secret: str | None = None
    correlation: CorrelationWindow = CorrelationWindow()

    @model_validator(mode="after")
    def _one_token(self) -> Integration:
        if (self.token is None) == (self.token_sha256 is None):
            raise ValueError("exactly one of `token_sha256` or `token` is required")
        if self.source == "gitlab" and self.hmac_secret is not None:
            raise ValueError("`hmac_secret` is not used by GitLab, which signs nothing: its secret token is the "
                             "integration's token (X-Gitlab-Token)")  # fmt: skip
        return self

    @field_validator("allow_cidrs")
    @classmethod
    def _cidrs(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        for cidr in value:
            ipaddress.ip_network(cidr, strict=False)
        return value

    @property
    def digest(self) -> str:
        return self.token_sha256 or hash_token(self.token or "")

    @cached_property
    def networks(self) -> tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...]:
        return tuple(ipaddress.ip_network(c, strict=False) for c in self.allow_cidrs)


class _File(BaseModel):
    model_config = ConfigDict(extra="forbid")
    integrations: list[Integration]


class ConfigError(Exception):
    """The integrations file is unusable; the message names the entry and the field."""


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


@dataclass(frozen=True)
class Integrations:
    """The integrations by name and by token digest."""

    by_name: Mapping[str, Integration]

    @cached_property
    def _by_digest(self) -> dict[str, Integration]:
        return {i.digest: i for i in self.by_name.values()}

    def authenticate(self, token: str) -> Integration | None:
        """The live integration whose token this is, else None (unknown and revoked alike)."""
        digest = hash_token(token)
        found = self._by_digest.get(digest)
        if found is None or not hmac.compare_digest(found.digest, digest) or found.revoked:
            return None
        return found

    def get(self, name: str) -> Integration | None:
        return self.by_name.get(name)


def parse_integrations(text: str, origin: str = "integrations file") -> Integrations:
    """Validate the YAML text of an integrations file; raises ConfigError naming entry and field."""
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as error:
        raise ConfigError(f"{origin}: not valid YAML: {error}") from None
    try:
        parsed = _File.model_validate(data)
    except ValidationError as error:
        raise ConfigError(f"{origin}: " + "; ".join(_describe(data, e) for e in error.errors())) from None
    names: dict[str, Integration] = {}
    digests: set[str] = set()
    for index, integration in enumerate(parsed.integrations):
        where = f"integrations[{index}] ({integration.name})"
        if integration.name in names:
            raise ConfigError(f"{origin}: {where}: name: duplicate integration name")
        if integration.digest in digests:
            raise ConfigError(f"{origin}: {where}: token: the same token is used by another integration")
        names[integration.name] = integration
        digests.add(integration.digest)
    return Integrations(names)


def _describe(data: object, error: Mapping[str, object]) -> str:
    loc = list(error["loc"])  # type: ignore[call-overload]  # pydantic's loc is a tuple
    where = ".".join(str(p) for p in loc) or "file"
    if len(loc) >= 2 and loc[0] == "integrations" and isinstance(loc[1], int) and isinstance(data, dict):
        entries = data.get("integrations") or []
        name = entries[loc[1]].get("name") if loc[1] < len(entries) and isinstance(entries[loc[1]], dict) else None
        field = ".".join(str(p) for p in loc[2:]) or "entry"
        where = f"integrations[{loc[1]}] ({name or 'unnamed'}): {field}"
    return f"{where}: {error['msg']}"


def load_integrations(path: Path | None) -> Integrations:
    """Read the integrations file at start-up; no file means no integrations (every token is refused)."""
    if path is None:
        return Integrations({})
    try:
        text = path.read_text()
    except OSError as error:
        raise ConfigError(f"{path}: cannot read the integrations file: {error.strerror}") from None
    return parse_integrations(text, str(path))
