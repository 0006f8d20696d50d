"""Pauses: a worker that stood still for longer than its group session allows stops before it writes again."""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import NoReturn

log = logging.getLogger("incidentflow.worker")

EXIT_PAUSED = 75
"""The worker's exit status when it found it had stood still past its session (EX_TEMPFAIL: start it again)."""


def pause_limit(session_timeout_seconds: float) -> float:
    """The longest pause after which the worker may still own its partitions.

    The group gives a worker's partitions away once no heartbeat came for the session timeout, and
    heartbeats go every fifth of it (runtime/app.py): a pause longer than the session less two
    heartbeat intervals may have cost the membership."""
    return session_timeout_seconds * 0.6


def stop_unwritten(why: str) -> NoReturn:
    """Ends the worker at once, writing nothing more (status `EXIT_PAUSED`): it may no longer own its partitions."""
    log.critical("%s: it stops without writing what it had in hand; started again, it recovers its tables from their "
                 "changelogs and handles those records again", why)  # fmt: skip
    logging.shutdown()
    os._exit(EXIT_PAUSED)


def _exit_paused(seconds: float) -> NoReturn:
    stop_unwritten(f"the worker stood still for {seconds:.1f} s, long enough for its group to give its partitions "
                   "to others")  # fmt: skip


@dataclass
class PauseWatch:
    """Notices that the whole process stood still (SIGSTOP, a paused VM or container, a host that
    stopped scheduling it) for longer than `limit` seconds, and stops the worker at once.

    Such a worker may have lost its partitions without knowing it: the group moved on while its
    heartbeats were frozen too, and another worker handles the same records. Were it to finish the
    batch in hand, its changelog records would land after the new owner's, so that the next recovery
    of those tables would read its older values as the last ones, and its stores would note offsets
    beyond the new owner's writes. Kafka fences such a writer only within transactions, which the
    worker does not use; so it stops instead, writing nothing more, and the records it had in hand
    are handled again from the committed offsets.

    A thread notes the time and the process's CPU time every `tick` seconds; a gap longer than
    `limit` between two notes in which the process used less than half a core is a pause (a busy
    process whose thread waited for the interpreter lock used about one core meanwhile). The thread
    may wake after the event loop's thread (which might flush first), so `check`, called before
    every flush, also counts the time since the last note."""

    limit: float
    tick: float = 0.1
    on_pause: Callable[[float], None] = _exit_paused
    clock: Callable[[], float] = time.monotonic
    cpu: Callable[[], float] = time.process_time
    last: tuple[float, float] = (0.0, 0.0)
    """(time, process CPU time) at the last note."""
    _thread: threading.Thread | None = None

    def start(self) -> None:
        self.note()
        self._thread = threading.Thread(target=self._run, name="incidentflow-pause-watch", daemon=True)
        self._thread.start()

    def note(self) -> None:
        self.last = (self.clock(), self.cpu())

    def check(self) -> None:
        """Stops the worker if the process stood still past the limit since the last note (once started)."""
        if self._thread is None:
            return
        stood = self.clock() - self.last[0]
        if stood > self.limit and self.cpu() - self.last[1] < stood / 2:
            self.on_pause(stood)

    def _run(self) -> None:
        while True:
            time.sleep(self.tick)
            self.check()
            self.note()
