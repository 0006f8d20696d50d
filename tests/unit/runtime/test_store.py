"""The RocksDB options every table store opens with: one shared cache that also holds index and filter blocks."""

from __future__ import annotations

import weakref
from pathlib import Path
from types import SimpleNamespace

import pytest
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


def _filled(path: Path, keys: int = 20_000) -> None:
    """A store of `keys` keys flushed to one SST file, closed."""
    db = RocksDBOptions(write_buffer_size=8 * 1024 * 1024).open(path)
    for i in range(keys):
        db[b"k%06d" % i] = b"v" * 100
    db.flush()
    db.close()


def _garble(sst: Path, offset: int, length: int) -> None:
    with sst.open("r+b") as file:
        file.seek(offset)
        file.write(bytes(range(256)) * (length // 256 + 1))


def test_a_store_whose_table_files_are_garbled_is_set_aside_and_opened_empty(tmp_path: Path) -> None:
    store.share_one_memory_budget(16)
    path = tmp_path / "aggregates-0.db"
    _filled(path)
    (sst,) = path.glob("*.sst")
    _garble(sst, 0, sst.stat().st_size)
    before = len(store.rebuilt)
    db = RocksDBOptions().open(path)
    assert db.get(b"k000001") is None  # empty: the restore fills it from the changelog
    db.close()
    assert store.rebuilt[before:] == [str(path)]
    (aside,) = tmp_path.glob("aggregates-0.db.corrupt-*")
    assert (aside / sst.name).exists()  # kept for inspection


def test_a_corrupt_block_fails_reads_and_the_worker_stops_and_rebuilds_on_its_next_start(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    store.share_one_memory_budget(16)
    path = tmp_path / "scope-0.db"
    _filled(path)
    (sst,) = path.glob("*.sst")
    _garble(sst, 1000, 5000)  # inside the data blocks: the file still ends as a table does
    db = RocksDBOptions().open(path)
    assert db.get(b"k019999") == b"v" * 100  # blocks the damage missed read as written
    with pytest.raises(Exception, match="Corruption") as read:
        for i in range(20_000):
            db.get(b"k%06d" % i)
    assert store.is_corruption(read.value)
    table = SimpleNamespace(data=SimpleNamespace(_dbs={0: db}))
    with pytest.raises(Exception, match="Corruption"):  # never a list cut short at the damaged block
        store.items_with_prefix(table, b"k", partition=0)  # type: ignore[arg-type]

    def exit_(status: int) -> None:
        raise SystemExit(status)

    monkeypatch.setattr(store.os, "_exit", exit_)
    with pytest.raises(SystemExit) as stopped:
        store.fail_on_corruption(read.value)
    assert stopped.value.code == store.EXIT_STORE_CORRUPT
    db.close()
    assert (tmp_path / "scope-0.db.corrupt").exists()
    db = RocksDBOptions().open(path)  # the next start
    assert db.get(b"k019999") is None
    db.close()
    assert not (tmp_path / "scope-0.db.corrupt").exists()
    assert list(tmp_path.glob("scope-0.db.corrupt-*"))


def test_a_store_found_corrupt_outside_a_handler_stops_the_worker_as_a_damaged_read_does(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The table recovery reads each store's last offset when partitions are assigned: a corruption met
    there crashes the app, and the crash marks the stores and exits 74 like a damaged read in a handler."""
    import asyncio

    from incidentflow.config import Integrations, Settings
    from incidentflow.runtime.app import create

    runtime = create(Settings(_env_file=None, data_dir=tmp_path), Integrations(by_name={}))  # type: ignore[call-arg]
    marked = tmp_path / "scope-0.db"
    monkeypatch.setattr(store, "_opened", {marked})

    def exit_(status: int) -> None:
        raise SystemExit(status)

    monkeypatch.setattr(store.os, "_exit", exit_)
    corrupt = Exception("Corruption: block checksum mismatch: stored = 1, computed = 2 in scope-0.db/000008.sst")
    with pytest.raises(SystemExit) as stopped:
        asyncio.run(runtime.app.crash(corrupt))
    assert stopped.value.code == store.EXIT_STORE_CORRUPT
    assert (tmp_path / "scope-0.db.corrupt").exists()
