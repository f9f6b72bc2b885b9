"""The event store: order, publish flags, queries, and riding out real SQLite write faults."""

from __future__ import annotations

import io
import json
import logging
import sqlite3
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

from stream_detector.config import StorageConfig
from stream_detector.messages import Box, Event
from stream_detector.outputs import EventStore, Publisher, Sinks, StdoutSink, event_payload


def make_event(n: int, camera: str = "door", kind: str = "start", wall: float = 1000.0) -> Event:
    end = wall + 1 if kind == "end" else None
    return Event(f"ev{n}", camera, kind, wall, 10.0 + n, end, None if end is None else 11.0 + n,
                 2.5, 7, Box(1, 2, 30, 40), 2.0)


def append(store: EventStore, n: int, **kw: Any) -> int:
    ev = make_event(n, **kw)
    return store.append(ev, event_payload(ev, None))


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
    start = event_payload(make_event(1), None)
    assert start["type"] == "new" and start["before"] is None
    assert start["after"]["box"] == [1, 2, 30, 40] and start["after"]["end_time"] is None
    end = event_payload(make_event(1, kind="end"), start["after"])
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


def test_publisher_delivers_in_order_and_retries_same_event(tmp_path: Path) -> None:
    """A sink that fails twice: the Publisher backs off and resends the same event, not the next."""

    class Flaky:
        name = "flaky"
        takes_snapshots = False

        def __init__(self) -> None:
            self.calls: list[int] = []
            self.fail_left = 2
            self.done = threading.Event()

        def deliver_event(self, seq: int, payload: dict[str, object]) -> bool:
            self.calls.append(seq)
            if seq == 2 and self.fail_left:
                self.fail_left -= 1
                return False
            if seq == 3:
                self.done.set()
            return True

        def anomaly_state(self, camera: str, on: bool) -> None:
            self.calls.append(-1 if on else -2)  # after its event, before the next one

    store = EventStore(tmp_path / "events.sqlite")
    sink = Flaky()
    seqs = [append(store, n) for n in range(3)]
    pub = Publisher(store, Sinks([sink], sink), min_backoff=0.01,  # type: ignore[list-item]
                    max_backoff=0.05)
    pub.start()
    pub.wake()
    assert sink.done.wait(5)
    assert pub.stop(2)
    assert sink.calls == [1, -1, 2, 2, 2, -1, 3, -1] and seqs == [1, 2, 3]
    assert store.unpublished() == [] and pub.failures == 2 and pub.delivered == 3
    store.close()


def test_stdout_sink_writes_json_lines() -> None:
    out = io.StringIO()
    sink = StdoutSink(out)
    payload = event_payload(make_event(1), None)
    assert sink.deliver_event(1, payload)
    assert json.loads(out.getvalue().splitlines()[0]) == payload


def test_dispatcher_sends_state_after_its_event_and_keeps_stdout_live_while_the_primary_fails(
        tmp_path: Path) -> None:
    """One path, per sink in store order: event, then anomaly state; a failing primary is retried on
    the same event while stdout beside it gets each event exactly once."""
    log: list[str] = []

    class Primary:
        name = "primary"
        takes_snapshots = False
        fail_left = 2

        def deliver_event(self, seq: int, payload: dict[str, Any]) -> bool:
            if seq == 2 and self.fail_left:
                self.fail_left -= 1
                log.append(f"primary fails {seq}")
                return False
            log.append(f"primary {seq}")
            return True

        def anomaly_state(self, camera: str, on: bool) -> None:
            log.append(f"primary {'ON' if on else 'OFF'}")

    out = io.StringIO()
    store = EventStore(tmp_path / "events.sqlite")
    append(store, 1)
    append(store, 1, kind="end")
    append(store, 3)
    primary = Primary()
    pub = Publisher(store, Sinks([StdoutSink(out), primary], primary),  # type: ignore[list-item]
                    min_backoff=0.01, max_backoff=0.05)
    pub.start()
    pub.wake()
    deadline = time.monotonic() + 5
    while store.unpublished() and time.monotonic() < deadline:
        time.sleep(0.01)
    assert pub.stop(2)
    assert log == ["primary 1", "primary ON", "primary fails 2", "primary fails 2", "primary 2",
                   "primary OFF", "primary 3", "primary ON"]
    assert [json.loads(line)["type"] for line in out.getvalue().splitlines()] == ["new", "end", "new"]
    store.close()
