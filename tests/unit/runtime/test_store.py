"""The RocksDB options every table store opens with: one shared cache that also holds index and filter blocks."""

from __future__ import annotations

import weakref
from pathlib import Path
from types import SimpleNamespace

import rocksdict
from faust.stores.rocksdb import RocksDBOptions
from faust.streams import _current_event

from incidentflow.runtime import store


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


class _Event:
    """Faust's current event is held by a weak reference, which a SimpleNamespace cannot have."""

    def __init__(self, message: SimpleNamespace) -> None:
        self.message = message


def test_items_with_prefix_read_one_partition_in_key_order(tmp_path: Path) -> None:
    """From the database of the current record's partition (or the one given), from the prefix to where it ends."""
    databases = {0: _open(tmp_path / "p0"), 1: _open(tmp_path / "p1")}
    for key in (b"b=1|si|10|z", b"b=1|si|10|a|b", b"b=1|si|1", b"b=1|si|11|a", b"b=1|si|10", b"a|si|10|a"):
        databases[0][key] = b""
    databases[1][b"b=1|si|10|other-partition"] = b""
    for value, key in enumerate((b"b=1|si|10|z", b"b=1|si|10|a|b")):
        databases[0][key] = str(value).encode()
    table = SimpleNamespace(data=SimpleNamespace(_dbs=databases, _db_for_partition=databases.__getitem__))
    event = _Event(SimpleNamespace(partition=0))
    token = _current_event.set(weakref.ref(event))  # what Faust sets while an agent handles a record
    try:
        found = store.items_with_prefix(table, b"b=1|si|10|")  # type: ignore[arg-type]
    finally:
        _current_event.reset(token)
    elsewhere = store.items_with_prefix(table, b"b=1|si|10|", partition=1)  # type: ignore[arg-type]
    unopened = store.items_with_prefix(table, b"b=1|si|10|", partition=5)  # type: ignore[arg-type]
    for db in databases.values():
        db.close()
    assert found == [(b"b=1|si|10|a|b", b"1"), (b"b=1|si|10|z", b"0")]
    assert elsewhere == [(b"b=1|si|10|other-partition", b"")]
    assert unopened == []


def test_items_with_prefix_scan_a_store_without_rocksdb() -> None:
    table = SimpleNamespace(data={b"s|2|x": b"", b"s|1|y": b"2", b"s|1|x": b"1", b"s|10|x": b""})
    assert store.items_with_prefix(table, b"s|1|") == [(b"s|1|x", b"1"), (b"s|1|y", b"2")]  # type: ignore[arg-type]
