"""The state horizon of a stage's table: an event-time clock per partition, and its items by the day their horizon counts from.

A stage that owns items which stop changing (the fold's resolved aggregates, the change fold's
changes) files each such item under its day (`file`); the partition's clock is the latest event
day the stage handled (`advance`). An item is due once the clock is more than `days` days past
its day (`due`), and an event more than `days` days before the clock is too late (`too_old`).
Both are counted in event time, so a replay of the same records closes the same items.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date

from incidentflow.runtime.tables import Table

CLOCK = b"\x00horizon:clock"
DUE = b"\x00horizon:due|"
"""Keys of the stage's own table, below every item key (`\\x00`): the clock, and `DUE + day|item`."""


@dataclass(frozen=True)
class Horizon:
    """The horizon of one stage's table, in the partition of the record being handled."""

    table: Table
    days: int

    def clock(self) -> date | None:
        """The latest event day handled in this partition (None before any)."""
        stored = self.table.get(CLOCK)
        return date.fromisoformat(stored.decode()) if stored else None

    def too_old(self, day: date, clock: date | None) -> bool:
        """Whether an event of `day` lies beyond the horizon of `clock`."""
        return clock is not None and (clock - day).days > self.days

    def past(self, since: date | None, day: date) -> bool:
        """Whether an event of `day` comes more than the horizon after `since`, the day an item's horizon counts from."""
        return since is not None and (day - since).days > self.days

    def file(self, item: str, old: date | None, new: date | None) -> None:
        """Moves an item from day `old` to day `new` (either may be None: not filed)."""
        if old == new:
            return
        if old is not None:
            self.table.pop(DUE + f"{old.isoformat()}|{item}".encode())
        if new is not None:
            self.table.set(DUE + f"{new.isoformat()}|{item}".encode(), b"")

    def due(self, clock: date) -> list[tuple[date, str]]:
        """(day, item) of every item filed more than the horizon before `clock`, oldest first."""
        found = []
        for key, _ in self.table.prefixed(DUE):
            day, _, item = key[len(DUE) :].decode().partition("|")
            on = date.fromisoformat(day)
            if (clock - on).days <= self.days:
                break  # keys are in day order: the rest are later
            found.append((on, item))
        return found

    def set_clock(self, clock: date) -> None:
        self.table.set(CLOCK, clock.isoformat().encode())
