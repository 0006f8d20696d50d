"""The gateway's Prometheus metrics, on a registry of the app's own."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Histogram


class GatewayMetrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.requests = Counter(
            "incidentflow_ingest_requests",
            "Webhook requests by source, integration and HTTP status.",
            ["source", "integration", "status"],
            registry=self.registry,
        )
        self.truncated_alerts = Counter(
            "incidentflow_alertmanager_truncated_alerts",
            "Alerts Alertmanager left out of its notifications (`truncatedAlerts`, its receiver's `max_alerts`).",
            ["integration"],
            registry=self.registry,
        )
        self.latency = Histogram(
            "incidentflow_ingest_request_duration_seconds",
            "Time from request to response, Kafka acknowledgement included.",
            ["source"],
            buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0),
            registry=self.registry,
        )
