"""The RocksDB options every table store opens with: one shared cache that also holds index and filter blocks."""

from __future__ import annotations

from pathlib import Path

import rocksdict
from faust.stores.rocksdb import RocksDBOptions

from incidentflow.stream import store


def _open(path: Path) -> rocksdict.Rdict:
    store.share_one_memory_budget(16)
    options = RocksDBOptions(write_buffer_size=1024 * 1024).as_options()
    options.create_if_missing(True)
    return rocksdict.Rdict(str(path), options=options)


def _persisted_options(path: Path) -> dict[str, str]:
    latest = max(path.glob("OPTIONS-*"), key=lambda p: int(p.name.split("-")[1]))
    return dict(line.strip().split("=", 1) for line in latest.read_text().splitlines() if "=" in line)


def test_stores_bound_open_files_and_charge_index_and_filter_blocks_to_the_cache(tmp_path: Path) -> None:
    db = _open(tmp_path)
    db.close()
    options = _persisted_options(tmp_path)
    assert options["max_open_files"] == str(store.MAX_OPEN_FILES)
    assert options["cache_index_and_filter_blocks"] == "true"
    assert options["pin_l0_filter_and_index_blocks_in_cache"] == "true"
