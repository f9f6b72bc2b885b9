"""The event store: order, publish flags, queries, and riding out real SQLite write faults."""

from __future__ import annotations

import logging
import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from conftest import append, make_event

from stream_detector.config import StorageConfig
from stream_detector.outputs import EventStore, event_payload


@contextmanager
def write_locked(path: Path) -> Iterator[None]:
    """Another process-like connection holds the write lock: the store's writes really fail."""
    other = sqlite3.connect(path, isolation_level=None)
    other.execute("BEGIN IMMEDIATE")
    try:
        yield
    finally:
        other.execute("ROLLBACK")
        other.close()


def test_payload_shape_follows_frigate() -> None:
    start = event_payload(make_event(1), None, host="cam-host")
    assert start["type"] == "new" and start["before"] is None
    assert start["after"]["box"] == [1, 2, 30, 40] and start["after"]["end_time"] is None
    end = event_payload(make_event(1, kind="end"), start["after"], host="cam-host")
    assert end["type"] == "end" and end["before"] == start["after"]
    assert end["after"]["end_time"] == 1001.0


def test_append_orders_and_marks_published(tmp_path: Path) -> None:
    store = EventStore.from_config(StorageConfig(path=str(tmp_path / "a" / "b")))
    assert (tmp_path / "a" / "b" / "events.sqlite").is_file()
    seqs = [append(store, n) for n in range(5)]
    assert seqs == sorted(seqs) and len(set(seqs)) == 5
    assert [e.event_id for e in store.unpublished()] == [f"ev{n}" for n in range(5)]
    assert [e.seq for e in store.unpublished(limit=2)] == seqs[:2]
    store.mark_published(seqs[0])
    store.mark_published(seqs[2])
    assert [e.seq for e in store.unpublished()] == [seqs[1], seqs[3], seqs[4]]
    store.close()

    reopened = EventStore(tmp_path / "a" / "b" / "events.sqlite")  # committed, and seqs continue
    assert [e.seq for e in reopened.unpublished()] == [seqs[1], seqs[3], seqs[4]]
    assert append(reopened, 9) > seqs[-1]
    stored = reopened.query()[0]
    assert stored.published and stored.payload["after"]["id"] == "ev0" and stored.type == "start"
    reopened.close()


def test_query_by_camera_and_since(tmp_path: Path) -> None:
    store = EventStore(tmp_path / "events.sqlite")
    append(store, 1, camera="door", wall=100.0)
    append(store, 2, camera="yard", wall=200.0)
    append(store, 3, camera="door", wall=300.0)
    append(store, 3, camera="door", kind="end", wall=300.0)  # end: compared by its end time
    assert [e.event_id for e in store.query(camera="door")] == ["ev1", "ev3", "ev3"]
    assert [e.wall_time for e in store.query(since=200.0)] == [200.0, 300.0, 301.0]
    assert [e.event_id for e in store.query(camera="door", since=150.0)] == ["ev3", "ev3"]
    assert [e.event_id for e in store.query(limit=2)] == ["ev3", "ev3"]  # newest two, in order
    assert store.query(camera="nope") == []
    store.close()


def test_write_fault_keeps_events_in_order_and_recovers(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    path = tmp_path / "events.sqlite"
    store = EventStore(path, busy_timeout=0.05)
    first = append(store, 0)
    with caplog.at_level(logging.INFO, logger="stream_detector.store"):
        with write_locked(path):
            held = [append(store, n) for n in (1, 2, 3)]
            assert not store.healthy and store.backlog_size == 3
            store.mark_published(first)  # the flag cannot be written either: remembered
            pending = store.unpublished()
            assert [e.seq for e in pending] == held  # backlog is still publishable, in order
            store.mark_published(held[0])
            assert [e.seq for e in store.unpublished()] == held[1:]
            assert [e.seq for e in store.query()] == [first, *held]
        warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
        assert len(warnings) == 1  # logged once per state change, not per failed write
        later = append(store, 4)  # the next append writes the backlog first, in order
        assert store.healthy and store.backlog_size == 0
        assert any("writable again" in r.getMessage() for r in caplog.records)
    store.close()

    reopened = EventStore(path)
    rows = reopened.query()
    assert [e.seq for e in rows] == [first, *held, later]
    assert [e.event_id for e in rows] == ["ev0", "ev1", "ev2", "ev3", "ev4"]
    assert [e.published for e in rows] == [True, True, False, False, False]
    reopened.close()
