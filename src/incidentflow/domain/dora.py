"""DORA performance levels: where the keys of a service and env fall among the software delivery
performance clusters of an Accelerate State of DevOps Report (DORA, Google Cloud): the 2024
report's by default, the 2023 report's on request (`incidentflow report --benchmark 2023`).

The 2024 report's clusters (its "software delivery performance levels"), as it gives them:

| level  | deployment frequency                              | change lead time                 | change fail rate | failed deployment recovery time |
| ------ | ------------------------------------------------- | -------------------------------- | ---------------- | ------------------------------- |
| elite  | on demand (multiple deploys per day)              | less than one day                | 5%               | less than one hour              |
| high   | between once per day and once per week            | between one day and one week     | 20%              | less than one day               |
| medium | between once per week and once per month          | between one week and one month   | 10%              | less than one day               |
| low    | between once per month and once every six months  | between one month and six months | 40%              | between one week and one month  |

The 2023 report's:

| level  | deployment frequency                     | change lead time               | change failure rate | failed deployment recovery time  |
| ------ | ---------------------------------------- | ------------------------------ | ------------------- | -------------------------------- |
| elite  | on demand (multiple deploys per day)     | less than one day              | 5%                  | less than one hour               |
| high   | between once per day and once per week   | between one day and one week   | 10%                 | less than one day                |
| medium | between once per week and once per month | between one week and one month | 15%                 | between one day and one week     |
| low    | between once per week and once per month | between one week and one month | 64%                 | between one month and six months |

A figure gets the best level whose range holds it. The ranges leave gaps and overlap, so they are
read as upper bounds, best level first, and anything beyond the last bound is low: at least one
deploy per day is elite, at least one per week high, at least one per 30 days medium; a median lead
time under a day elite, under a week high, under 30 days medium. Durations are classified by their
median; time to restore (of every incident) takes the bounds of failed deployment recovery time.

The change fail rates of the clusters are typical values, not ranges. In 2023 they grow from elite
to low, so a rate up to 5% is elite, up to 10% high, up to 15% medium. In 2024 they do not (high's
20% is above medium's 10%): a rate takes the level whose typical value is nearest, so up to 7.5% is
elite, up to 15% medium, up to 30% high, and above that low. The 2024 recovery times of high and
medium are the same (less than one day): under an hour is elite, under a day high, and longer is
low (2024's low range starts at a week; a day to a week falls in no cluster and is read as low).

DORA publishes no levels for deployment rework rate, the fifth key since 2024: it has none here.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

Level = Literal["elite", "high", "medium", "low"]
Benchmark = Literal["2024", "2023"]
BENCHMARKS: tuple[Benchmark, ...] = ("2024", "2023")
DEFAULT: Benchmark = "2024"

DAY = 86_400.0
Bounds = tuple[tuple[float, Level], ...]


@dataclass(frozen=True)
class Clusters:
    """One report's clusters as bounds, best level first."""

    frequency: Bounds
    """Deploys per day at or above which a level holds."""
    lead_time: Bounds
    """Median lead time in seconds below which a level holds."""
    failure_rate: Bounds
    """Change failure rate at or below which a level holds."""
    recovery: Bounds
    """Median recovery time in seconds below which a level holds."""


_FREQUENCY: Bounds = ((1.0, "elite"), (1 / 7, "high"), (1 / 30, "medium"))
_LEAD_TIME: Bounds = ((DAY, "elite"), (7 * DAY, "high"), (30 * DAY, "medium"))
CLUSTERS: dict[Benchmark, Clusters] = {
    "2024": Clusters(
        frequency=_FREQUENCY,
        lead_time=_LEAD_TIME,
        failure_rate=((0.075, "elite"), (0.15, "medium"), (0.30, "high")),
        recovery=((3_600.0, "elite"), (DAY, "high")),
    ),
    "2023": Clusters(
        frequency=_FREQUENCY,
        lead_time=_LEAD_TIME,
        failure_rate=((0.05, "elite"), (0.10, "high"), (0.15, "medium")),
        recovery=((3_600.0, "elite"), (DAY, "high"), (7 * DAY, "medium")),
    ),
}


def deployment_frequency(per_day: float | None, benchmark: Benchmark = DEFAULT) -> Level | None:
    """None without a change: no frequency to place."""
    if not per_day:
        return None
    return next((level for bound, level in CLUSTERS[benchmark].frequency if per_day >= bound), "low")


def lead_time(median_seconds: float | None, benchmark: Benchmark = DEFAULT) -> Level | None:
    return _below(median_seconds, CLUSTERS[benchmark].lead_time)


def change_failure_rate(rate: float | None, benchmark: Benchmark = DEFAULT) -> Level | None:
    if rate is None:
        return None
    return next((level for bound, level in CLUSTERS[benchmark].failure_rate if rate <= bound), "low")


def recovery_time(median_seconds: float | None, benchmark: Benchmark = DEFAULT) -> Level | None:
    """Failed deployment recovery time, and time to restore."""
    return _below(median_seconds, CLUSTERS[benchmark].recovery)


def _below(seconds: float | None, bounds: Bounds) -> Level | None:
    if seconds is None:
        return None
    return next((level for bound, level in bounds if seconds < bound), "low")
