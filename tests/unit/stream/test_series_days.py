"""A day's figures are recounted from its entries, so a record handled again after a partial write ends right."""

from __future__ import annotations

from datetime import UTC, date, datetime
from typing import Any

from incidentflow.domain import metrics
from incidentflow.stream.series import Days, day_key

DAY = date(2026, 12, 11)


class Table(dict[bytes, bytes]):
    """What `Days` uses of a Faust table; `data` is what `items_with_prefix` scans without RocksDB."""

    @property
    def data(self) -> dict[bytes, bytes]:
        return self


def change(hour: int, failed: bool) -> metrics.ChangeEntry:
    return metrics.ChangeEntry(changed_at=datetime(2026, 12, 11, hour, tzinfo=UTC), failed=failed)


def days(table: Any) -> Days[metrics.ChangeDayFigures, metrics.ChangeEntry]:
    return Days(table, metrics.ChangeDayFigures, metrics.ChangeEntry)


def test_figures_are_recounted_from_the_entries_and_saved() -> None:
    table = Table()
    series = days(table)
    series.enter("orders", DAY, "c-1", change(1, failed=True))
    series.enter("orders", DAY, "c-2", change(2, failed=False))
    series.enter("orders", DAY, "c-2", change(2, failed=True))  # filed again: replaced, not added
    series.enter("orders", date(2026, 12, 12), "c-3", change(3, failed=False))  # another day
    series.enter("ordersx", DAY, "c-4", change(4, failed=False))  # another series sharing the prefix
    assert series.recount("orders", DAY).figures() == (2, 2)
    assert series.figures("orders", DAY).figures() == (2, 2)  # saved
    series.leave("orders", DAY, "c-1")
    series.leave("orders", DAY, "c-9")  # never filed: nothing
    assert series.recount("orders", DAY).figures() == (1, 1)


def test_a_record_handled_again_after_its_figures_were_lost_ends_right() -> None:
    """The session-9 failure: the entry reached the changelog and the figures did not."""
    table = Table()
    series = days(table)
    for n in range(11):
        series.enter("orders", DAY, f"c-{n}", change(n, failed=n < 9))
    series.recount("orders", DAY)
    series.enter("orders", DAY, "c-11", change(12, failed=False))  # then the worker is killed
    assert series.figures("orders", DAY).figures() == (11, 9)
    series.enter("orders", DAY, "c-11", change(12, failed=False))  # the next owner handles it again
    assert series.recount("orders", DAY).figures() == (12, 9)


def test_resolution_figures_recounted_are_those_of_running_sums() -> None:
    table = Table()
    series: Days[metrics.DayFigures, metrics.Resolution] = Days(table, metrics.DayFigures, metrics.Resolution)
    seconds = [600.0, 2400.0, 0.1, 0.2]
    for n, s in enumerate(seconds):
        series.enter("orders|sev1", DAY, f"i-{n}", metrics.Resolution(resolved_at=datetime(2026, 12, 11, tzinfo=UTC),
                                                                       seconds=s))  # fmt: skip
    running = metrics.DayFigures()
    for s in seconds:
        running = running.entered(metrics.Resolution(resolved_at=datetime(2026, 12, 11, tzinfo=UTC), seconds=s))
    assert series.recount("orders|sev1", DAY) == running
    assert table[day_key("orders|sev1", DAY)] == running.model_dump_json().encode()
