"""The integrations file: a bad file names the entry and the field; tokens authenticate by hash."""

from __future__ import annotations

from pathlib import Path

import pytest

from incidentflow.config import ConfigError, Settings, hash_token, load_integrations, parse_integrations
from incidentflow.topics import Topics

GOOD = f"""
integrations:
  - name: a
    source: elven
    token_sha256: {hash_token("token-a-0123456789")}
    labels: {{service: api}}
  - name: b
    source: sleuth
    token: token-b-0123456789
    revoked: true
"""


def test_tokens_authenticate_by_hash_and_revoked_ones_do_not() -> None:
    integrations = parse_integrations(GOOD)
    found = integrations.authenticate("token-a-0123456789")
    assert found is not None and found.name == "a"
    assert integrations.authenticate("token-b-0123456789") is None
    assert integrations.authenticate("nope") is None


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("integrations:\n  - {name: x, source: opsgenie, token: tttttttttttttttt}", "integrations[0] (x): source"),
        ("integrations:\n  - {name: x, source: elven}", "integrations[0] (x): entry: Value error, exactly one of"),
        ("integrations:\n  - {name: ok, source: elven, token: tttttttttttttttt}\n  - {name: y, source: elven, token: uuuuuuuuuuuuuuuu, default_severity: sev1}", "integrations[1] (y): default_severity"),
        ("integrations:\n  - {name: x, source: elven, token: tttttttttttttttt, allow_cidrs: [10.0.0.0/33]}", "integrations[0] (x): allow_cidrs"),
        ("integrations:\n  - {name: x, source: elven, token: tttttttttttttttt, colour: red}", "integrations[0] (x): colour"),
        ("integrations:\n  - {name: x, source: elven, token: tttttttttttttttt}\n  - {name: x, source: elven, token: uuuuuuuuuuuuuuuu}", "integrations[1] (x): name: duplicate"),
        ("integrations: [", "not valid YAML"),
    ],
)  # fmt: skip
def test_bad_file_names_entry_and_field(text: str, expected: str) -> None:
    with pytest.raises(ConfigError) as error:
        parse_integrations(text)
    assert expected in str(error.value)


def test_missing_file_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read the integrations file"):
        load_integrations(tmp_path / "nope.yaml")


def test_the_demo_file_is_valid() -> None:
    assert load_integrations(Path(__file__).resolve().parents[2] / "deploy/demo/integrations.yaml").get("demo-elven")


def test_list_settings_come_from_comma_separated_environment_values(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("INCIDENTFLOW_TRUSTED_PROXIES", "10.0.0.1, 10.0.0.2")
    monkeypatch.setenv("INCIDENTFLOW_CORRELATION_SCOPE_LABELS", "service,team")
    settings = Settings()
    assert settings.trusted_proxies == ("10.0.0.1", "10.0.0.2")
    assert settings.correlation_scope_labels == ("service", "team")
    assert settings.correlation_conflict_labels == ("env", "environment", "region")


def test_the_topics_between_stages_keep_records_for_the_state_horizon_and_raw_forever() -> None:
    names = Topics.of(Settings(state_horizon_days=30))
    configs = names.configs()
    month = str(30 * 24 * 3600 * 1000)
    for topic in (names.alerts, names.changes, *names.internal):
        assert configs[topic]["retention.ms"] == month
    assert configs[names.raw]["retention.ms"] == "-1"
    assert configs[names.incidents]["cleanup.policy"] == configs[names.metrics]["cleanup.policy"] == "compact"
