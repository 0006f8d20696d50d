"""A day's figures are running sums that take each record's change once, so a record handled again
after a partial write ends right, and a change of a day reads none of its entries."""

from __future__ import annotations

import contextlib
import random
from datetime import UTC, date, datetime, timedelta

from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import BaseModel

from incidentflow.domain import metrics
from incidentflow.runtime.cache import BatchCache
from incidentflow.stream.series import Days, day_key
from tests.factories import At, DictTable, FakeContext

DAY = date(2026, 12, 11)


def change(hour: int, failed: bool) -> metrics.DayEntry:
    return DAY, metrics.Entry(at=datetime(2026, 12, 11, hour, tzinfo=UTC), failed=failed)


def resolution(seconds: float, day: date = DAY) -> metrics.DayEntry:
    return day, metrics.Entry(at=datetime.combine(day, datetime.min.time(), UTC), seconds=seconds)


def counts(figures: metrics.DayFigures) -> tuple[int, int]:
    """(changes, failed) of a day of a change series."""
    return figures.count, figures.failed


def durations(figures: metrics.DayFigures) -> tuple[int, float, float]:
    """(count, sum, longest) of a day of a series of durations."""
    return figures.count, figures.sum_microseconds / 1e6, figures.max_seconds


def recount(days: Days, series: str, day: date) -> metrics.DayFigures:
    """The day's figures counted from its entries."""
    figures = metrics.DayFigures()
    for entry in days.entries(series, day):
        figures = figures.entered(entry)
    return figures


def same(a: metrics.DayFigures, b: metrics.DayFigures) -> bool:
    """The same figures, whatever position each took in last."""
    return a.model_copy(update={"applied": -1}) == b.model_copy(update={"applied": -1})


class Counted(DictTable):
    """A table that counts the reads of a day's entries (`items_with_prefix` scans `data`)."""

    scans = 0

    @property
    def data(self) -> dict[bytes, bytes]:
        self.scans += 1
        return self


def test_figures_follow_the_entries_as_items_enter_move_and_leave() -> None:
    table = DictTable()
    days = Days(table)
    days.move("orders", "c-1", 1, None, change(1, failed=True))
    days.move("orders", "c-2", 2, None, change(2, failed=False))
    days.move("orders", "c-2", 3, change(2, failed=False), change(2, failed=True))  # the same day, failed now
    days.move("orders", "c-3", 4, None, (date(2026, 12, 12), change(3, False)[1]))  # another day
    days.move("ordersx", "c-4", 5, None, change(4, failed=False))  # another series sharing the prefix
    assert counts(days.figures("orders", DAY)) == (2, 2)
    assert counts(recount(days, "orders", DAY)) == (2, 2)
    moved = days.move("orders", "c-1", 6, change(1, failed=True), (date(2026, 12, 12), change(1, True)[1]))
    assert {day: counts(figures) for day, figures in moved.items()} == {DAY: (1, 1), date(2026, 12, 12): (2, 1)}
    days.move("orders", "c-2", 7, change(2, failed=True), None)
    assert counts(days.figures("orders", DAY)) == (0, 0)
    assert days.entries("orders", DAY) == []


def test_a_change_is_applied_once_however_often_its_record_is_handled() -> None:
    table = DictTable()
    days = Days(table)
    days.move("orders|sev1", "i-1", 1, None, resolution(600.0))
    once = table[day_key("orders|sev1", DAY)]
    days.move("orders|sev1", "i-1", 1, None, resolution(600.0))
    assert table[day_key("orders|sev1", DAY)] == once
    assert durations(days.figures("orders|sev1", DAY)) == (1, 600.0, 600.0)


def test_a_record_handled_again_after_its_figures_were_lost_ends_right() -> None:
    """The entry was written and the figures were not when the worker was killed."""
    table = DictTable()
    days = Days(table)
    for n in range(11):
        days.move("orders", f"c-{n}", n, None, change(n, failed=n < 9))
    days.enter("orders", DAY, "c-11", change(12, failed=False)[1])  # then the worker is killed
    assert counts(days.figures("orders", DAY)) == (11, 9)
    days.move("orders", "c-11", 11, None, change(12, failed=False))  # the next owner handles it again
    assert counts(days.figures("orders", DAY)) == (12, 9)


def test_only_a_maximum_that_leaves_reads_the_days_entries() -> None:
    table = Counted()
    days = Days(table)
    for n, seconds in enumerate([600.0, 2400.0, 0.1, 0.2]):
        days.move("orders|sev1", f"i-{n}", n, None, resolution(seconds))
    days.move("orders|sev1", "i-0", 10, resolution(600.0), None)  # not the longest: no read
    assert table.scans == 0
    assert durations(days.figures("orders|sev1", DAY)) == (3, 2400.3, 2400.0)
    days.move("orders|sev1", "i-1", 11, resolution(2400.0), resolution(5.0))  # the longest leaves: one read
    assert table.scans == 1
    assert durations(days.figures("orders|sev1", DAY)) == (3, 5.3, 5.0)


class Killed(Exception):
    pass


class Dying(DictTable):
    """A table whose writes stop for good after `left` more (the worker is killed there); a dying
    worker's later writes are lost with it."""

    def __init__(self, into: DictTable, left: int) -> None:
        super().__init__()
        self.into, self.left = into, left

    def get(self, key: bytes, partition: int | None = None) -> bytes | None:
        return self.into.get(key)

    @property
    def data(self) -> dict[bytes, bytes]:
        return self.into

    def _write(self) -> None:
        if self.left == 0:
            raise Killed
        self.left -= 1

    def set(self, key: bytes, value: bytes) -> None:
        self._write()
        self.into[key] = value

    def pop(self, key: bytes, default: bytes | None = None) -> bytes | None:  # type: ignore[override]
        self._write()
        return self.into.pop(key, default)


@settings(max_examples=300, deadline=None)
@given(st.randoms(use_true_random=False), st.integers(5, 60))
def test_figures_equal_a_recount_whatever_write_a_worker_is_killed_at(rnd: random.Random, records: int) -> None:
    """Items enter, move between two days and leave, each record handled as the series agent does
    (entries and figures by `Days.move`, then the member); some workers are killed after any
    number of a record's writes, and the record is handled again by the next one."""
    table = DictTable()
    members: dict[str, metrics.DayEntry | None] = {}
    for offset in range(records):
        item = f"i-{rnd.randrange(6)}"
        entering = None if rnd.random() < 0.25 else resolution(rnd.choice([1.0, 5.0, 60.0, 60.0, 3600.0]),
                                                                DAY + timedelta(days=rnd.randrange(2)))  # fmt: skip
        change = offset
        if rnd.random() < 0.4:
            with contextlib.suppress(Killed):  # killed after some of its writes, or after all but the member
                Days(Dying(table, rnd.randrange(5))).move("s", item, change, members.get(item), entering)
        Days(table).move("s", item, change, members.get(item), entering)
        members[item] = entering
    days = Days(table)
    for day in (DAY, DAY + timedelta(days=1)):
        expected = [
            entry.seconds for kept in members.values() if kept is not None and kept[0] == day for entry in [kept[1]]
        ]
        assert same(days.figures("s", day), recount(days, "s", day))
        assert days.figures("s", day).count == len(expected)
        assert days.figures("s", day).max_seconds == max(expected, default=0.0)
        assert days.figures("s", day).sum_microseconds == sum(metrics.microseconds(s) for s in expected)


class Kept(BaseModel):
    """A member as the series agent keeps it: the day and resolution it has an entry for, if any."""

    entry: tuple[date, metrics.Entry] | None = None


def _handle_batch(table: DictTable, batch: list[tuple[int, str, metrics.DayEntry | None]]) -> None:
    """What the series agent does with one batch: each record's entries written at once and its
    figures and member kept in caches, then the figures written back, then the members."""
    context = FakeContext()
    figures, members = BatchCache(table, metrics.DayFigures, context), BatchCache(table, Kept, context)
    days = Days(table, cache=figures)
    with context.acting_for(At(0)):
        for position, item, entering in batch:
            old = members.get(f"member|{item}".encode())
            leaving = old.entry if old is not None else None
            if leaving == entering:
                continue  # a duplicate: what `Days.move` finds
            days.move("s", item, position, leaving, entering)
            members.set(f"member|{item}".encode(), Kept(entry=entering))
        figures.write_back()
        members.write_back()


@settings(max_examples=300, deadline=None)
@given(st.randoms(use_true_random=False), st.integers(5, 60))
def test_batched_figures_equal_a_recount_whatever_write_a_worker_is_killed_at(rnd: random.Random, records: int) -> None:
    """As above, with records handled in batches whose figures and members are written back once at
    the end of the batch (a day's figures then carry only the batch's last position): a worker is
    killed after any number of a batch's writes, and the next one handles the whole batch again."""
    table = DictTable()
    final: dict[str, metrics.DayEntry | None] = {}
    position = 0
    while position < records:
        batch = []
        for _ in range(rnd.randint(1, 8)):
            item = f"i-{rnd.randrange(6)}"
            entering = None if rnd.random() < 0.25 else resolution(rnd.choice([1.0, 5.0, 60.0, 60.0, 3600.0]),
                                                                    DAY + timedelta(days=rnd.randrange(2)))  # fmt: skip
            batch.append((position, item, entering))
            final[item] = entering
            position += 1
        if rnd.random() < 0.5:
            with contextlib.suppress(Killed):
                _handle_batch(Dying(table, rnd.randrange(3 * len(batch) + 4)), batch)
        _handle_batch(table, batch)
    days = Days(table)
    for day in (DAY, DAY + timedelta(days=1)):
        expected = [kept[1].seconds for kept in final.values() if kept is not None and kept[0] == day]
        assert same(days.figures("s", day), recount(days, "s", day))
        assert days.figures("s", day).count == len(expected)
        assert days.figures("s", day).sum_microseconds == sum(metrics.microseconds(s) for s in expected)
