"""What `runtime.install` changes for the whole worker process."""

from __future__ import annotations

import gc

from incidentflow.runtime.install import GC_THRESHOLDS, install


def test_the_worker_collects_cycles_less_often_than_python_by_default() -> None:
    before = gc.get_threshold()
    try:
        gc.set_threshold(700, 10, 10)
        install(256)
        assert gc.get_threshold() == GC_THRESHOLDS
        install(256)  # installing twice changes nothing
        assert gc.get_threshold() == GC_THRESHOLDS
    finally:
        gc.set_threshold(*before)
