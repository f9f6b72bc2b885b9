"""The writer thread: a fault in it, crash recovery, snapshots never truncated, retention and the
WAL, and events the disk refuses reported in full when the store closes.
"""

from __future__ import annotations

import json
import logging
import os
import sqlite3
import subprocess
import sys
import time
from functools import partial
from pathlib import Path
from typing import Any

import pytest
from prometheus_client import CollectorRegistry

from stream_detector.daemon import Metrics
from stream_detector.messages import Event, EventOut, ScoreOut
from stream_detector.outputs import Clipper, EventStore, Retention, Writer, event_payload


def make_event(kind: str = "start", eid: str = "ev1", reason: str | None = None) -> Event:
    return Event(eid, "door", kind, 1000.0, 4.0, 1003.0 if kind == "end" else None,
                 7.0 if kind == "end" else None, 3.0, 40, None, 2.0, reason=reason)


class Recorder:
    def __init__(self) -> None:
        self.stored: list[int] = []
        self.scores: list[tuple[str, float]] = []


def emitter_for(store: EventStore, tmp_path: Path, registry: CollectorRegistry,
                **kw: Any) -> tuple[Writer, Recorder]:
    rec = Recorder()
    em = Writer(store, partial(event_payload, host="cam-host"), Metrics(registry), lambda seq, cam, t: rec.stored.append(seq),
                 lambda cam, v: rec.scores.append((cam, v)), tmp_path / "snapshots", **kw)
    return em, rec


class FailingOnce(EventStore):
    """An event store whose first append raises: a fault the emitter has not seen before."""

    failed = False

    def append(self, event: Event, payload: dict[str, Any], timeline: Any = None) -> int:
        if not self.failed:
            self.failed = True
            raise RuntimeError("injected emitter fault")
        return super().append(event, payload, timeline)


def test_a_fault_in_the_emitter_is_counted_and_the_next_event_still_goes(tmp_path: Path) -> None:
    registry = CollectorRegistry()
    store = FailingOnce(tmp_path / "events.sqlite")
    em, rec = emitter_for(store, tmp_path, registry)
    em.start()
    em.put(EventOut(make_event("start", "ev1"), None, time.monotonic()))
    em.put(EventOut(make_event("start", "ev2"), None, time.monotonic()))
    em.put(ScoreOut("door", 1.5))
    deadline = time.monotonic() + 5
    while len(rec.scores) < 1 and time.monotonic() < deadline:
        time.sleep(0.01)
    assert em.is_alive()
    em.finish()
    assert [e.event_id for e in store.query()] == ["ev2"] and rec.scores == [("door", 1.5)]
    assert registry.get_sample_value("stream_detector_thread_errors_total", {"thread": "emitter"}) == 1
    store.close()


def test_recover_ends_events_left_open_by_a_killed_run(tmp_path: Path) -> None:
    store = EventStore(tmp_path / "events.sqlite")
    start = make_event("start", "open1")
    first = event_payload(start, None, "snap.jpg", host="cam-host")
    store.append(start, first)
    store.append(make_event("start", "done"), event_payload(make_event("start", "done"), None, host="cam-host"))
    store.append(make_event("end", "done"), event_payload(make_event("end", "done"), None, host="cam-host"))
    em, rec = emitter_for(store, tmp_path, CollectorRegistry(), clock=lambda: 5000.0)
    assert em.recover() == ["door"]
    end = store.query()[-1]
    assert (end.event_id, end.type) == ("open1", "end") and rec.stored == [end.seq]
    assert end.payload["type"] == "end" and end.payload["before"] == first["after"]
    assert end.payload["after"]["end_reason"] == "restart"
    assert end.payload["after"]["end_time"] == 5000.0 and end.payload["after"]["snapshot"] == "snap.jpg"
    assert store.open_events() == []
    assert em.recover() == []  # once closed, closed
    store.close()


def test_snapshot_is_never_left_empty_or_truncated(tmp_path: Path) -> None:
    """A file-size limit (like a full disk) makes the write fail half-way: no partial JPEG stays,
    the failure is counted, and the event is stored without its picture."""
    script = f"""
import resource, signal, time
from functools import partial
from pathlib import Path
import numpy as np
from prometheus_client import CollectorRegistry
from stream_detector.messages import Event, EventOut, Peak
from stream_detector.daemon import Metrics
from stream_detector.outputs import EventStore, Writer, event_payload
tmp = Path({str(tmp_path)!r})
store = EventStore(tmp / "events.sqlite")
registry = CollectorRegistry()
em = Writer(store, partial(event_payload, host="h"), Metrics(registry), lambda *a: None, lambda *a: None, tmp / "snaps")
em.camera("door", lambda peak, ev: b"x" * 300_000)
signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
resource.setrlimit(resource.RLIMIT_FSIZE, (200_000, resource.RLIM_INFINITY))
em.start()
ev = Event("ev1", "door", "start", 1000.0, 4.0, None, None, 3.0, 40, None, 2.0)
em.put(EventOut(ev, Peak(3.0, np.zeros((4, 4, 3), np.uint8), np.zeros((2, 2))), time.monotonic()))
em.finish()
row = store.query()[0]
print(row.payload["after"]["snapshot"], registry.get_sample_value(
    "stream_detector_snapshot_failures_total", {{"camera": "door"}}))
"""
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60,
                          check=False)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["None", "1.0"], done.stdout + done.stderr
    assert "snapshot not saved" in done.stderr
    assert [p.name for p in (tmp_path / "snaps").iterdir()] == []  # no empty or partial file


def test_retention_by_age_and_size_and_the_wal_is_checkpointed(tmp_path: Path) -> None:
    store = EventStore(tmp_path / "events.sqlite")
    recent = time.time() - 3600
    for i in range(100):  # 50 old events (start and end at wall time 1000), 50 recent ones
        old = i < 50
        ev = make_event("end", f"ev{i}")
        ev = ev if old else Event(ev.id, "door", "end", recent, 4.0, recent + 3, 7.0, 3.0, 40, None, 2.0)
        store.mark_published(store.append(ev, event_payload(ev, None, host="cam-host")))
    snaps = tmp_path / "snapshots"
    snaps.mkdir()
    now = time.time()
    clips = tmp_path / "clips"
    clips.mkdir()
    for i, age_days in enumerate([40, 3, 2, 1]):  # one too old, three within keep_days
        p = snaps / f"s{i}.jpg"
        p.write_bytes(b"j" * 400_000)
        os.utime(p, (now - age_days * 86400, now - age_days * 86400))
    for name, age_days in (("old.mp4", 41), ("c2.mp4", 2.5)):  # clips count like snapshots
        p = clips / name
        p.write_bytes(b"m" * 300_000)
        os.utime(p, (now - age_days * 86400, now - age_days * 86400))
    wal = tmp_path / "events.sqlite-wal"
    assert wal.stat().st_size > 0
    em, _ = emitter_for(store, tmp_path, CollectorRegistry(), retention=Retention(30, keep_mb=1.0),
                        clips=Clipper(clips))
    em.maintain()  # what the emitter runs at start and every `interval` seconds
    assert sorted(p.name for p in snaps.iterdir()) == ["s2.jpg", "s3.jpg"]  # too old, then oldest
    assert [p.name for p in clips.iterdir()] == []  # too old; then older than s2 over the budget
    assert [e.event_id for e in store.query()] == [f"ev{i}" for i in range(50, 100)]
    assert wal.stat().st_size == 0  # checkpointed and truncated
    store.close()


def test_events_the_disk_refuses_are_reported_in_full_at_close(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    path = tmp_path / "events.sqlite"
    store = EventStore(path, busy_timeout=0.05)
    other = sqlite3.connect(path, isolation_level=None)
    other.execute("BEGIN IMMEDIATE")  # another process holds the write lock past shutdown
    try:
        store.append(make_event("start", "held1"), event_payload(make_event("start", "held1"), None, host="cam-host"))
        assert store.backlog_size == 1 and not store.healthy and store.write_failures >= 1
        caplog.set_level(logging.ERROR, "stream_detector.store")
        store.close()
    finally:
        other.execute("ROLLBACK")
        other.close()
    lines = [r.getMessage() for r in caplog.records]
    assert any("closing with 1 unwritten events" in line for line in lines), lines
    held = [line for line in lines if line.startswith("unwritten event seq 1: ")]
    assert len(held) == 1 and json.loads(held[0].split(": ", 1)[1])["after"]["id"] == "held1"
