"""DORA performance levels: where each of the four keys of a service and env falls among the
software delivery performance clusters of the 2023 Accelerate State of DevOps Report (DORA,
Google Cloud), the report that named failed deployment recovery time.

The report's clusters, as it gives them:

| level  | deployment frequency                     | change lead time             | change failure rate | failed deployment recovery time |
| ------ | ---------------------------------------- | ---------------------------- | ------------------- | ------------------------------- |
| elite  | on demand (multiple deploys per day)     | less than one day            | 5%                  | less than one hour              |
| high   | between once per day and once per week   | between one day and one week | 10%                 | less than one day               |
| medium | between once per week and once per month | between one week and one month | 15%               | between one day and one week    |
| low    | between once per week and once per month | between one week and one month | 64%               | between one month and six months |

A figure gets the best level whose range holds it. The report's ranges leave gaps and overlap
(its low and medium clusters share their deployment frequency and lead time), so the ranges are
read as upper bounds, best level first, and anything beyond the medium bound is low: at least one
deploy per day is elite, at least one per week high, at least one per 30 days medium; a change
failure rate up to 5% elite, up to 10% high, up to 15% medium. Durations are classified by their
median. Time to restore (of every incident, not only those after a change) is classified with the
bounds of failed deployment recovery time.
"""

from __future__ import annotations

from typing import Literal

Level = Literal["elite", "high", "medium", "low"]

DAY = 86_400.0
_FREQUENCY: tuple[tuple[float, Level], ...] = ((1.0, "elite"), (1 / 7, "high"), (1 / 30, "medium"))
"""Deploys per day at or above which a level holds, best first."""
_LEAD_TIME: tuple[tuple[float, Level], ...] = ((DAY, "elite"), (7 * DAY, "high"), (30 * DAY, "medium"))
"""Median lead time in seconds below which a level holds, best first."""
_FAILURE_RATE: tuple[tuple[float, Level], ...] = ((0.05, "elite"), (0.10, "high"), (0.15, "medium"))
"""Change failure rate at or below which a level holds, best first."""
_RECOVERY: tuple[tuple[float, Level], ...] = ((3_600.0, "elite"), (DAY, "high"), (7 * DAY, "medium"))
"""Median recovery time in seconds below which a level holds, best first."""


def deployment_frequency(per_day: float | None) -> Level | None:
    """None without a change: no frequency to place."""
    if not per_day:
        return None
    return next((level for bound, level in _FREQUENCY if per_day >= bound), "low")


def lead_time(median_seconds: float | None) -> Level | None:
    return _below(median_seconds, _LEAD_TIME)


def change_failure_rate(rate: float | None) -> Level | None:
    if rate is None:
        return None
    return next((level for bound, level in _FAILURE_RATE if rate <= bound), "low")


def recovery_time(median_seconds: float | None) -> Level | None:
    """Failed deployment recovery time, and time to restore."""
    return _below(median_seconds, _RECOVERY)


def _below(seconds: float | None, bounds: tuple[tuple[float, Level], ...]) -> Level | None:
    if seconds is None:
        return None
    return next((level for bound, level in bounds if seconds < bound), "low")
