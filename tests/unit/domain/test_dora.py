"""The DORA performance levels at the edges of the 2024 (default) and 2023 reports' clusters (domain/dora.py)."""

from __future__ import annotations

import pytest

from incidentflow.domain import dora

HOUR, DAY = 3_600.0, 86_400.0


@pytest.mark.parametrize(
    ("per_day", "level"),
    [
        (None, None),
        (0.0, None),
        (3.0, "elite"),
        (1.0, "elite"),
        (0.99, "high"),
        (1 / 7, "high"),
        (1 / 8, "medium"),
        (1 / 30, "medium"),
        (1 / 31, "low"),
    ],  # fmt: skip
)
def test_deployment_frequency(per_day: float | None, level: str | None) -> None:
    assert dora.deployment_frequency(per_day) == level == dora.deployment_frequency(per_day, "2023")


@pytest.mark.parametrize(
    ("seconds", "level"),
    [
        (None, None),
        (0.0, "elite"),
        (DAY - 1, "elite"),
        (DAY, "high"),
        (7 * DAY - 1, "high"),
        (7 * DAY, "medium"),
        (30 * DAY - 1, "medium"),
        (30 * DAY, "low"),
    ],  # fmt: skip
)
def test_lead_time(seconds: float | None, level: str | None) -> None:
    assert dora.lead_time(seconds) == level == dora.lead_time(seconds, "2023")


@pytest.mark.parametrize(
    ("rate", "level"),
    [
        (None, None),
        (0.0, "elite"),
        (0.05, "elite"),
        (0.051, "high"),
        (0.10, "high"),
        (0.15, "medium"),
        (0.151, "low"),
        (0.64, "low"),
    ],  # fmt: skip
)
def test_change_failure_rate_2023(rate: float | None, level: str | None) -> None:
    assert dora.change_failure_rate(rate, "2023") == level


@pytest.mark.parametrize(
    ("rate", "level"),
    [
        (None, None),
        (0.0, "elite"),
        (0.05, "elite"),
        (0.075, "elite"),
        (0.076, "medium"),
        (0.10, "medium"),
        (0.15, "medium"),
        (0.151, "high"),
        (0.20, "high"),
        (0.30, "high"),
        (0.301, "low"),
        (0.40, "low"),
    ],  # fmt: skip
)
def test_change_failure_rate_2024_nearest_typical_value(rate: float | None, level: str | None) -> None:
    assert dora.change_failure_rate(rate) == level == dora.change_failure_rate(rate, "2024")


@pytest.mark.parametrize(
    ("seconds", "level"),
    [
        (None, None),
        (59 * 60.0, "elite"),
        (HOUR, "high"),
        (DAY - 1, "high"),
        (DAY, "medium"),
        (7 * DAY - 1, "medium"),
        (7 * DAY, "low"),
    ],  # fmt: skip
)
def test_recovery_time_2023(seconds: float | None, level: str | None) -> None:
    assert dora.recovery_time(seconds, "2023") == level


@pytest.mark.parametrize(
    ("seconds", "level"),
    [(None, None), (59 * 60.0, "elite"), (HOUR, "high"), (DAY - 1, "high"), (DAY, "low"), (30 * DAY, "low")],
)
def test_recovery_time_2024_has_no_medium_of_its_own(seconds: float | None, level: str | None) -> None:
    assert dora.recovery_time(seconds) == level
