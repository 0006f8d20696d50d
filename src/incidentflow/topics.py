"""Topic names and their Kafka configuration, and creating them; shared by every process."""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass

from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import TopicAlreadyExistsError

from incidentflow.config import Settings

log = logging.getLogger(__name__)

COMPACTED = {"cleanup.policy": "compact", "min.cleanable.dirty.ratio": "0.1", "segment.ms": "3600000"}
FOREVER = {"retention.ms": "-1", "retention.bytes": "-1"}


@dataclass(frozen=True)
class Topics:
    """The product's topics under one namespace (default `incidentflow`)."""

    namespace: str
    raw_source: str | None = None
    """Where raw envelopes are read from, when not `<namespace>.raw` (a replay into a new namespace)."""
    horizon_days: int = 90
    """The state horizon (`Settings.state_horizon_days`): how long the topics between stages keep a record."""

    @classmethod
    def of(cls, settings: Settings) -> Topics:
        return cls(settings.topic_namespace, settings.raw_topic, settings.state_horizon_days)

    def _name(self, suffix: str) -> str:
        return f"{self.namespace}.{suffix}"

    @property
    def raw(self) -> str:
        return self.raw_source or self._name("raw")

    @property
    def alerts(self) -> str:
        return self._name("alerts")

    @property
    def changes(self) -> str:
        return self._name("changes")

    @property
    def cdevents(self) -> str:
        """CDEvents published straight to Kafka as CloudEvents (Kafka binding), normalized like the raw topic."""
        return self._name("cdevents")

    @property
    def incidents(self) -> str:
        return self._name("incidents")

    @property
    def correlations(self) -> str:
        return self._name("correlations")

    @property
    def metrics(self) -> str:
        return self._name("metrics")

    @property
    def deadletter(self) -> str:
        return self._name("deadletter")

    @property
    def contributions(self) -> str:
        """Internal: every metric's contributions, keyed by series (`metric|service|severity`)."""
        return self._name("metric-contributions")

    @property
    def scope(self) -> str:
        """Internal: incident and change sides re-keyed by scope label (`service=checkout`)."""
        return self._name("correlation-scope")

    @property
    def suspects(self) -> str:
        """Internal: incident sides and the changes found for them, keyed by aggregate_id."""
        return self._name("correlation-suspects")

    @property
    def verdicts(self) -> str:
        """Internal: whether a pair is live, keyed by change_id (for the change failure status)."""
        return self._name("correlation-verdicts")

    @property
    def history(self) -> str:
        """Internal: deployments and incidents re-keyed by `service|env`, for rollbacks and rework."""
        return self._name("deployment-history")

    @property
    def history_verdicts(self) -> str:
        """Internal: what a deployment history says of a change, keyed by change_id (for the change fold)."""
        return self._name("deployment-verdicts")

    @property
    def lead(self) -> str:
        """Internal: pushes and the change fold's lead time requests, keyed by repository."""
        return self._name("lead-time")

    @property
    def lead_verdicts(self) -> str:
        """Internal: the lead time join's verdicts, keyed by change_id (for the change fold)."""
        return self._name("lead-verdicts")

    @property
    def internal(self) -> tuple[str, ...]:
        """The topics between the worker's own stages; their records are packed (runtime/packed.py)."""
        return (self.contributions, self.scope, self.suspects, self.verdicts, self.history, self.history_verdicts,
                self.lead, self.lead_verdicts)  # fmt: skip

    def configs(self) -> dict[str, dict[str, str]]:
        """Every topic with its config: raw is kept forever, state topics are compacted, and the
        topics between stages keep a record for the state horizon (past it, every event it could
        carry is too late: a worker stopped longer than that has nothing there left to do)."""
        between = {"retention.ms": str(self.horizon_days * 24 * 3600 * 1000)}
        return {
            self.raw: FOREVER,
            self.alerts: between,
            self.changes: between,
            self.cdevents: {},
            self.incidents: COMPACTED,
            # keyed by aggregate_id with one record per pair: compaction would drop all but one pair
            self.correlations: FOREVER,
            self.metrics: COMPACTED,
            self.deadletter: FOREVER,
            self.contributions: between,
            self.scope: between,
            self.suspects: between,
            self.verdicts: between,
            self.history: between,
            self.history_verdicts: between,
            self.lead: between,
            self.lead_verdicts: between,
        }


def changelog_topic(settings: Settings, table: str) -> str:
    """The name Faust gives the changelog topic of a worker table."""
    return f"{settings.app_id}-{table}-changelog"


async def ensure_topics(settings: Settings, names: list[str] | None = None, tables: tuple[str, ...] = ()) -> list[str]:
    """Create the missing topics (all by default, plus the changelogs of `tables`); returns the ones created.

    Existing topics are left as they are. Returns only once every wanted topic shows in the
    cluster's metadata: a worker that starts before its changelog topics are visible can cache
    them as having no partitions and then fail every write to that table (seen in CI).
    """
    topics = Topics.of(settings)
    configs = topics.configs()
    for table in tables:
        configs[changelog_topic(settings, table)] = COMPACTED
    if settings.min_insync_replicas is not None:
        configs = {name: {**config, "min.insync.replicas": str(settings.min_insync_replicas)}
                   for name, config in configs.items()}  # fmt: skip
    wanted = names or list(configs)
    admin = AIOKafkaAdminClient(bootstrap_servers=settings.kafka_bootstrap, request_timeout_ms=10000)
    await admin.start()
    try:
        existing = set(await admin.list_topics())
        missing = [n for n in wanted if n not in existing]
        if missing:
            new = [
                NewTopic(n, settings.partitions, settings.replication_factor, topic_configs=configs[n]) for n in missing
            ]
            response = await admin.create_topics(new)
            for topic, code, *_ in response.topic_errors:
                # another process may have created a topic between list and create: that is fine
                if code not in (0, TopicAlreadyExistsError.errno):
                    raise RuntimeError(f"creating topic {topic} failed with Kafka error code {code}")
            log.info("created topics %s", ", ".join(missing))
        await _visible(admin, wanted)
        return missing
    finally:
        await admin.close()


async def _visible(admin: AIOKafkaAdminClient, names: list[str], timeout: float = 30.0) -> None:
    """Waits until every topic has its partitions in the metadata the broker serves."""
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        described = await admin.describe_topics(names)
        pending = [d["topic"] for d in described if d.get("error_code") or not d.get("partitions")]
        if not pending:
            return
        if asyncio.get_running_loop().time() > deadline:
            raise RuntimeError(f"topics not visible after {timeout:.0f} s: {', '.join(pending)}")
        await asyncio.sleep(0.2)
