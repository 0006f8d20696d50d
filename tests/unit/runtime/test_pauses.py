"""A worker that stood still past its session stops before it writes again (runtime/pauses.py)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from dataclasses import dataclass

from incidentflow.runtime.pauses import EXIT_PAUSED, PauseWatch, pause_limit


def test_the_limit_leaves_two_heartbeats_of_the_session() -> None:
    # heartbeats go every fifth of the session: a pause of 0.6 of it may already have cost the membership
    assert pause_limit(10.0) == 6.0
    assert pause_limit(6.0) < 6.0 - 6.0 / 5


@dataclass
class Clocks:
    now: float = 100.0
    cpu_seconds: float = 5.0

    def pass_(self, seconds: float, cpu: float) -> None:
        self.now += seconds
        self.cpu_seconds += cpu


def watch_with(clocks: Clocks, paused: list[float]) -> PauseWatch:
    # the thread notes nothing in these tests (its tick is a minute): only the checks before flushes run
    return PauseWatch(limit=0.5, tick=60.0, on_pause=paused.append, clock=lambda: clocks.now,
                      cpu=lambda: clocks.cpu_seconds)  # fmt: skip


def test_a_check_before_a_flush_counts_the_time_since_the_watch_last_noted_it() -> None:
    clocks, paused = Clocks(), []
    watch = watch_with(clocks, paused)
    clocks.pass_(3.0, 0.0)
    watch.check()  # not started: the worker's start may take longer than the limit
    assert paused == []
    watch.start()
    clocks.pass_(0.2, 0.0)
    watch.check()
    assert paused == []
    clocks.pass_(1.8, 0.01)  # the process stood still and the watch's thread has not woken yet
    watch.check()
    assert paused == [2.0]


def test_a_process_busy_past_the_limit_is_not_taken_for_a_paused_one() -> None:
    clocks, paused = Clocks(), []
    watch = watch_with(clocks, paused)
    watch.start()
    clocks.pass_(2.0, 1.9)  # one long call held the interpreter lock, using a core all along
    watch.check()
    assert paused == []


def test_a_process_stopped_past_the_limit_exits_with_its_status_when_continued() -> None:
    script = textwrap.dedent("""
        import time
        from incidentflow.runtime.pauses import PauseWatch
        PauseWatch(limit=0.5).start()
        print("ready", flush=True)
        time.sleep(30)
    """)
    child = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        assert child.stdout is not None and child.stdout.readline() == b"ready\n"
        time.sleep(0.3)
        assert child.poll() is None  # running normally: no pause
        os.kill(child.pid, signal.SIGSTOP)
        time.sleep(1.5)
        os.kill(child.pid, signal.SIGCONT)
        assert child.wait(timeout=10) == EXIT_PAUSED
        assert child.stderr is not None and b"stood still for" in child.stderr.read()
    finally:
        child.kill()
