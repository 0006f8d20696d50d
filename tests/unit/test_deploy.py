"""The deployment files, checked offline: compose against the Compose Specification's schema, the
Kubernetes manifests against Kubernetes' schemas, and every metric name they query against what the
product exports."""

from __future__ import annotations

import json
import re
import subprocess  # noqa: S404  # promtool, a local binary
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import jsonschema
import kubernetes_validate
import pytest
import yaml
from prometheus_client import CollectorRegistry

from incidentflow.domain import metrics
from incidentflow.metrics.gateway import GatewayMetrics
from incidentflow.metrics.worker import LagCollector, SeriesCollector, WorkerMetrics
from tests.binaries import prometheus_binary

ROOT = Path(__file__).resolve().parents[2]
K8S = ROOT / "deploy" / "k8s"
KUBERNETES_VERSION = "1.31"


def _now() -> datetime:
    return datetime(2026, 11, 24, tzinfo=UTC)


def exported_names() -> set[str]:
    """Every sample name the worker and the gateway can expose (counters with `_total`, histograms' series)."""
    worker = WorkerMetrics()
    for collector in (
        SeriesCollector(
            index=lambda: [],
            day=lambda s, d: metrics.Day(on=d, figures=metrics.DayFigures(), entries=list),
            owned=lambda k: True,
            now=_now,
        ),
        LagCollector(lambda: []),
    ):
        worker.add_series(collector)
    names: set[str] = set()
    registry: CollectorRegistry
    for registry in (worker.registry, GatewayMetrics().registry):
        for family in registry.collect():
            if family.type == "counter":
                names.add(f"{family.name}_total")
            elif family.type == "histogram":
                names.update(f"{family.name}_{suffix}" for suffix in ("bucket", "sum", "count"))
            else:
                names.add(family.name)
    return names


def queried_names(expression: str) -> set[str]:
    return set(re.findall(r"\bincidentflow_[a-z_]+\b", expression))


def test_the_worker_exports_the_names_of_the_design() -> None:
    names = exported_names()
    for name in ("incidentflow_mttr_seconds", "incidentflow_incidents_open", "incidentflow_change_failure_ratio",
                 "incidentflow_changes", "incidentflow_time_to_restore_seconds", "incidentflow_deployment_frequency_per_day",
                 "incidentflow_lead_time_seconds", "incidentflow_failed_deployment_recovery_seconds", "incidentflow_events_processed_total", "incidentflow_consumer_lag",
                 "incidentflow_ingest_requests_total", "incidentflow_ingest_request_duration_seconds_bucket"):  # fmt: skip
        assert name in names


def test_every_dashboard_query_uses_exported_metrics() -> None:
    dashboard = json.loads((ROOT / "deploy/grafana/dashboards/incidentflow.json").read_text())
    exported = exported_names()
    expressions = [t["expr"] for panel in dashboard["panels"] for t in panel.get("targets", [])]
    recorded = {rule["record"] for group in _rules()["groups"] for rule in group["rules"] if "record" in rule}
    assert len(expressions) >= 6
    for expression in expressions:
        assert queried_names(expression), expression
        assert queried_names(expression) <= exported | recorded, expression
    # a row per DORA key, each with the environment selector
    rows = [p["title"] for p in dashboard["panels"] if p["type"] == "row"]
    for key in ("Deployment frequency", "Lead time for changes", "Change failure rate", "Time to restore",
                "Failed deployment recovery time"):  # fmt: skip
        assert key in rows
    assert all('env=~"$env"' in e for e in expressions if "window=" in e)
    titles = " ".join(p["title"] for p in dashboard["panels"]).lower()
    for topic in ("mttr", "change failure", "open incidents", "ingest rate", "consumer lag"):
        assert topic in titles


def _rules() -> Any:
    config = yaml.safe_load((ROOT / "deploy/prometheus/prometheus.yml").read_text())
    return yaml.safe_load((ROOT / "deploy/prometheus" / config["rule_files"][0]).read_text())


def test_recording_and_alert_rules_pass_their_promtool_tests() -> None:
    """deploy/prometheus/rules.test.yml: the DORA recording rules and alerts on given series."""
    found = subprocess.run([prometheus_binary("promtool"), "test", "rules", "rules.test.yml"], cwd=ROOT / "deploy/prometheus",
                           capture_output=True, text=True, timeout=60, check=False)  # fmt: skip
    assert found.returncode == 0, found.stdout + found.stderr


def test_prometheus_config_and_rules_use_exported_metrics_and_scrape_every_process() -> None:
    config = yaml.safe_load((ROOT / "deploy/prometheus/prometheus.yml").read_text())
    targets = [t for job in config["scrape_configs"] for group in job["static_configs"] for t in group["targets"]]
    assert sorted(targets) == ["gateway:8080", "worker-1:6066", "worker-2:6066"]
    rules = yaml.safe_load((ROOT / "deploy/prometheus" / config["rule_files"][0]).read_text())
    expressions = [rule["expr"] for group in rules["groups"] for rule in group["rules"]]
    for expression in expressions:
        assert queried_names(expression) and queried_names(expression) <= exported_names(), expression


def test_compose_file_is_valid_against_the_compose_specification() -> None:
    schema = json.loads((ROOT / "tests/schemas/compose-spec.json").read_text())
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    jsonschema.validate(compose, schema)
    services = compose["services"]
    assert {"kafka", "gateway", "worker-1", "worker-2", "prometheus", "grafana"} <= set(services)
    assert services["kafka"]["image"].startswith("apache/kafka:")
    assert services["kafka"]["environment"]["KAFKA_PROCESS_ROLES"] == "broker,controller"  # KRaft
    for path in (
        "deploy/prometheus",
        "deploy/grafana/provisioning",
        "deploy/grafana/dashboards",
        "deploy/demo/integrations.yaml",
    ):
        assert (ROOT / path).exists(), path


def test_compose_rejects_what_the_schema_forbids() -> None:
    """The schema check is real: a misspelt key fails it."""
    schema = json.loads((ROOT / "tests/schemas/compose-spec.json").read_text())
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    compose["services"]["gateway"]["portz"] = ["8080:8080"]
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(compose, schema)


def k8s_resources() -> list[tuple[str, dict[str, Any]]]:
    kustomization = yaml.safe_load((K8S / "kustomization.yaml").read_text())
    found = []
    for name in kustomization["resources"]:
        for document in yaml.safe_load_all((K8S / name).read_text()):
            found.append((f"{name}:{document['kind']}", document))
    return found


@pytest.mark.parametrize(("where", "document"), k8s_resources(), ids=lambda v: v if isinstance(v, str) else "")
def test_kubernetes_manifests_are_valid(where: str, document: dict[str, Any]) -> None:
    kubernetes_validate.validate(document, KUBERNETES_VERSION, strict=True)


def test_kustomization_is_complete() -> None:
    kustomization = yaml.safe_load((K8S / "kustomization.yaml").read_text())
    for generator in kustomization["configMapGenerator"] + kustomization["secretGenerator"]:
        for file in generator.get("envs", []) + generator.get("files", []):
            assert (K8S / file).exists(), file
    kinds = {where.split(":")[1] for where, _ in k8s_resources()}
    assert {"Deployment", "Service", "HorizontalPodAutoscaler", "StatefulSet"} <= kinds
    statefulset = next(d for w, d in k8s_resources() if d["kind"] == "StatefulSet")
    assert statefulset["spec"]["volumeClaimTemplates"], "workers keep RocksDB on a volume"
    secret_names = {g["name"] for g in kustomization["secretGenerator"]}
    for _, document in k8s_resources():
        for volume in document.get("spec", {}).get("template", {}).get("spec", {}).get("volumes", []):
            if "secret" in volume:
                assert volume["secret"]["secretName"] in secret_names
        annotations = document.get("spec", {}).get("template", {}).get("metadata", {}).get("annotations", {})
        if document["kind"] in ("Deployment", "StatefulSet"):
            assert annotations.get("prometheus.io/scrape") == "true"


def test_kubernetes_validation_rejects_a_misspelt_field() -> None:
    deployment = next(d for _, d in k8s_resources() if d["kind"] == "Deployment")
    broken = json.loads(json.dumps(deployment))
    broken["spec"]["replica"] = 2
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(broken, KUBERNETES_VERSION, strict=True)
