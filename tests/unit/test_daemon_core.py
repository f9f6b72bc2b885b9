"""The daemon's threads one by one: the inference worker (stream losses in order, a timeline that
survives reconnects, a scoring fault that rebuilds one camera's scorer), the emitter (a fault in it,
crash recovery, snapshots, retention, the WAL), and the in-process Daemon's /healthz on a stall.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import sqlite3
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from prometheus_client import CollectorRegistry

from stream_detector.capture import FrameQueue, is_stream_state
from stream_detector.config import parse_daemon_config
from stream_detector.daemon import Daemon
from stream_detector.detect import EventPolicy, EventTracker, InferenceWorker, Item, Lane
from stream_detector.messages import Event, EventOut, Frame, FrameScore, Peak, ScoreOut, StreamState
from stream_detector.daemon import Metrics
from stream_detector.outputs import EventStore, Retention, Writer, event_payload

HIGH, LOW = 5.0, 0.0
POLICY = EventPolicy(1.0, 0.5, min_duration=0.2, cooldown=1.0, update_interval=100.0)


def frame(t: float, score: float, index: int = 0, mono: float | None = None) -> Frame:
    """A frame whose scripted score is written into its first pixel."""
    image = np.zeros((48, 64, 3), np.uint8)
    image[0, 0, 0] = int(score * 10)
    return Frame("door", index, t, 1000.0 + t, time.monotonic() if mono is None else mono, image)


class ScriptedScorer:
    """Scores a frame by the value written into it (a fake at the scorer protocol seam)."""

    def __init__(self, fail: bool = False) -> None:
        self.fail = fail
        self.resets = 0
        self.scored = 0

    def reset(self) -> None:
        self.resets += 1

    def score(self, frames: list[Frame]) -> list[FrameScore]:
        if self.fail:
            raise RuntimeError("injected scoring fault")
        self.scored += len(frames)
        return [FrameScore(f.camera, f.index, f.stream_time, f.wall_time, f.mono_time,
                           f.image[0, 0, 0] / 10, f.image[0, 0, 0] / 10, False, np.zeros((2, 2)), None)
                for f in frames]


class Worker:
    """A running InferenceWorker with one lane; what it emits is recorded in order."""

    def __init__(self, scorers: list[ScriptedScorer]) -> None:
        self.registry = CollectorRegistry()
        self.metrics = Metrics(self.registry)
        self.cond = threading.Condition()
        self.queue: FrameQueue[Item] = FrameQueue(1000, cond=self.cond, keep=is_stream_state)
        self.out: list[EventOut | ScoreOut] = []
        self.scorers = scorers
        self.built = 0
        self.stop = threading.Event()
        self.worker = InferenceWorker(self.cond, self.out.append, self.metrics, self.stop)
        self.worker.add(Lane("door", self.queue, EventTracker("door", POLICY), self._make))
        self.worker.start()

    def _make(self, w: int, h: int) -> ScriptedScorer:
        self.built += 1
        return self.scorers[min(self.built, len(self.scorers)) - 1]

    def put(self, *items: Item) -> None:
        for item in items:
            self.queue.put(item)

    def events(self) -> list[Event]:
        return [o.event for o in list(self.out) if isinstance(o, EventOut)]

    def wait(self, ok: Callable[[], bool], timeout: float = 5.0) -> None:
        deadline = time.monotonic() + timeout
        while not ok():
            assert time.monotonic() < deadline, f"timed out; emitted {self.events()}"
            time.sleep(0.01)

    def close(self) -> None:
        self.stop.set()
        self.worker.wake()
        self.worker.join(5)
        assert not self.worker.is_alive()


@pytest.fixture()
def worker() -> Iterator[Callable[..., Worker]]:
    made: list[Worker] = []

    def make(*scorers: ScriptedScorer) -> Worker:
        made.append(Worker(list(scorers) or [ScriptedScorer()]))
        return made[-1]
    yield make
    for w in made:
        w.close()


def test_a_loss_is_handled_in_order_with_the_frames(worker: Callable[..., Worker]) -> None:
    """Frames queued before a loss are scored before it; the loss resets windows and ends the event."""
    scorer = ScriptedScorer()
    w = worker(scorer)
    lost = StreamState("door", False, "source returned no frame", 2000.0, time.monotonic())
    w.put(*[frame(i / 10, HIGH, i) for i in range(11)], lost,
          *[frame(i / 10, LOW, i) for i in range(5)])
    w.wait(lambda: len(w.events()) == 2 and scorer.scored == 16)
    start, end = w.events()
    assert (start.type, end.type) == ("start", "end")
    assert end.reason == "stream lost: source returned no frame" and end.end_wall == 2000.0
    assert end.end_stream == pytest.approx(1.0)  # the last frame before the loss was scored first
    assert scorer.resets == 1


def test_stream_time_restarting_at_zero_does_not_stall_the_cooldown(worker: Callable[..., Worker]) -> None:
    """A reconnect restarts stream time at 0 while an event cools down: it must still end."""
    w = worker()
    m = time.monotonic()
    w.put(*[frame(i / 10, HIGH, i, m + i / 10) for i in range(21)])  # 0.0-2.0 s: the event starts
    w.put(*[frame(2.0 + i / 10, LOW, 21 + i, m + 2.0 + i / 10) for i in range(1, 5)])  # cooling
    w.put(*[frame(i / 10, LOW, i, m + 3.0 + i / 10) for i in range(12)])  # reconnected at t = 0
    w.wait(lambda: len(w.events()) == 2)
    end = w.events()[1]
    assert end.type == "end" and end.reason == "cooldown"
    assert end.end_stream > 2.4  # on the camera's timeline, which never goes back


def test_a_scoring_fault_rebuilds_that_scorer_and_the_worker_goes_on(
        worker: Callable[..., Worker], caplog: pytest.LogCaptureFixture) -> None:
    good = ScriptedScorer()
    w = worker(ScriptedScorer(fail=True), good)
    w.put(*[frame(i / 10, LOW, i) for i in range(5)])
    w.wait(lambda: (w.registry.get_sample_value("stream_detector_scoring_errors_total",
                                                {"camera": "door"}) or 0) == 1)
    w.put(*[frame(1 + i / 10, LOW, 5 + i) for i in range(5)])
    w.wait(lambda: good.scored == 5)
    assert w.built == 2 and w.worker.is_alive()
    assert any("camera door: scoring failed; rebuilding its scorer" in r.getMessage()
               for r in caplog.records)


class JointScorer(ScriptedScorer):
    """A ScriptedScorer that shares model calls with the others of its `batch_key`."""

    batch_key = "one model"
    calls: list[list[int]] = []  # frames per camera in each joint call, shared by the class

    def score_many(self, scorers: list[JointScorer], frames: list[list[Frame]]) -> list[list[FrameScore]]:
        if any(s.fail for s in scorers):
            raise RuntimeError("injected scoring fault in a joint call")
        JointScorer.calls.append([len(f) for f in frames])
        return [s.score(f) for s, f in zip(scorers, frames)]


def test_cameras_of_one_model_share_calls_and_a_faulty_one_is_isolated(
        caplog: pytest.LogCaptureFixture) -> None:
    JointScorer.calls = []
    cond, out, stop = threading.Condition(), [], threading.Event()
    metrics = Metrics(CollectorRegistry())
    worker = InferenceWorker(cond, out.append, metrics, stop, chunk=4, linger=0.5)
    good = {name: JointScorer() for name in ("a", "b", "c")}
    bad = JointScorer(fail=True)
    queues = {}
    for name in ("a", "b", "c"):
        queues[name] = FrameQueue(100, cond=cond, keep=is_stream_state)
        scorers = iter([bad, good[name]] if name == "c" else [good[name]])
        worker.add(Lane(name, queues[name], EventTracker(name, POLICY), lambda w, h, s=scorers: next(s)))
    for i in range(3):  # three frames per camera, queued before the worker starts
        for name in ("a", "b", "c"):
            queues[name].put(dataclasses.replace(frame(i / 10, LOW, i), camera=name))
    worker.start()
    try:
        deadline = time.monotonic() + 5
        while good["a"].scored < 3 or good["b"].scored < 3:
            assert time.monotonic() < deadline
            time.sleep(0.01)
        assert metrics_value(metrics, "scoring_errors_total", {"camera": "c"}) == 1
        assert good["c"].scored == 0 and bad.scored == 0  # c's frames went with its scorer
        with cond:  # all at once (the condition is reentrant), so the worker sees them together
            for i in range(3, 5):  # c's rebuilt scorer now joins the others' calls
                for name in ("a", "b", "c"):
                    queues[name].put(dataclasses.replace(frame(i / 10, LOW, i), camera=name))
        while good["c"].scored < 2:
            assert time.monotonic() < deadline
            time.sleep(0.01)
        # chunk 4 over 3 cameras: a frame each per call; once c failed, a and b went on together
        assert [1, 1] in JointScorer.calls and JointScorer.calls[-1] == [1, 1, 1]
    finally:
        stop.set()
        worker.wake()
        worker.join(5)
    assert any("a joint model call failed" in r.getMessage() for r in caplog.records)


def metrics_value(metrics: Metrics, name: str, labels: dict[str, str]) -> float:
    return metrics.registry.get_sample_value(f"stream_detector_{name}", labels) or 0.0


# --- the emitter -----------------------------------------------------------------------------------


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
    em = Writer(store, event_payload, Metrics(registry), lambda seq, cam, t: rec.stored.append(seq),
                 lambda cam, v: rec.scores.append((cam, v)), tmp_path / "snapshots", **kw)
    return em, rec


class FailingOnce(EventStore):
    """An event store whose first append raises: a fault the emitter has not seen before."""

    failed = False

    def append(self, event: Event, payload: dict[str, Any]) -> int:
        if not self.failed:
            self.failed = True
            raise RuntimeError("injected emitter fault")
        return super().append(event, payload)


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
    first = event_payload(start, None, "snap.jpg")
    store.append(start, first)
    store.append(make_event("start", "done"), event_payload(make_event("start", "done"), None))
    store.append(make_event("end", "done"), event_payload(make_event("end", "done"), None))
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
from pathlib import Path
import numpy as np
from prometheus_client import CollectorRegistry
from stream_detector.messages import Event, EventOut, Peak
from stream_detector.daemon import Metrics
from stream_detector.outputs import EventStore, Writer, event_payload
tmp = Path({str(tmp_path)!r})
store = EventStore(tmp / "events.sqlite")
registry = CollectorRegistry()
em = Writer(store, event_payload, Metrics(registry), lambda *a: None, lambda *a: None, tmp / "snaps")
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
        store.mark_published(store.append(ev, event_payload(ev, None)))
    snaps = tmp_path / "snapshots"
    snaps.mkdir()
    now = time.time()
    for i, age_days in enumerate([40, 3, 2, 1]):  # one too old, three within keep_days
        p = snaps / f"s{i}.jpg"
        p.write_bytes(b"j" * 400_000)
        os.utime(p, (now - age_days * 86400, now - age_days * 86400))
    wal = tmp_path / "events.sqlite-wal"
    assert wal.stat().st_size > 0
    em, _ = emitter_for(store, tmp_path, CollectorRegistry(), retention=Retention(30, keep_mb=1.0))
    em.maintain()  # what the emitter runs at start and every `interval` seconds
    assert sorted(p.name for p in snaps.iterdir()) == ["s2.jpg", "s3.jpg"]  # too old, then oldest
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
        store.append(make_event("start", "held1"), event_payload(make_event("start", "held1"), None))
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


# --- the daemon in-process: /healthz follows the critical threads' heartbeats -------------------------


class BlockingStore(EventStore):
    """An event store whose append blocks until released: a wedged emitter."""

    def __init__(self, path: Path) -> None:
        super().__init__(path)
        self.entered = threading.Event()
        self.release = threading.Event()

    def append(self, event: Event, payload: dict[str, Any]) -> int:
        self.entered.set()
        self.release.wait(30)
        return super().append(event, payload)


class Always:
    """A scorer factory whose scorers say every frame is anomalous (an event starts at once)."""

    def __init__(self, model: Any, threshold: float, ignore: Any) -> None:
        self.inner = ScriptedScorer()

    def reset(self) -> None:
        pass

    def score(self, frames: list[Frame]) -> list[FrameScore]:
        return [FrameScore(f.camera, f.index, f.stream_time, f.wall_time, f.mono_time, 1e6, 1e6,
                           False, np.zeros((2, 2)), None) for f in frames]


def healthz(port: int) -> tuple[int, dict[str, Any]]:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=5) as resp:
            return resp.status, json.load(resp)
    except urllib.error.HTTPError as err:
        return err.code, json.load(err)


def test_healthz_fails_when_the_emitter_is_wedged(tmp_path: Path, vtest: Path) -> None:
    cfg = parse_daemon_config({
        "cameras": {"door": {"source": str(vtest), "realtime": False, "min_duration": 0.1,
                             "snapshot": False}},
        "metrics": {"port": 0}, "storage": {"path": str(tmp_path / "store")}}, "test.toml")
    store = BlockingStore(tmp_path / "events.sqlite")
    daemon = Daemon(cfg, open(tmp_path / "stdout", "w"), scorer=Always, store=store, stall_after=1.0)
    daemon.start()
    try:
        assert healthz(daemon.metrics_port)[0] == 200
        assert store.entered.wait(30), "no event reached the store"
        deadline = time.monotonic() + 10
        while (answer := healthz(daemon.metrics_port))[0] == 200 and time.monotonic() < deadline:
            time.sleep(0.2)
        status, body = answer
        assert status == 503 and body["stale"] == ["emitter"], body
        assert daemon.liveness()[0] is False  # what the WATCHDOG=1 pings follow
        store.release.set()
        deadline = time.monotonic() + 10
        while healthz(daemon.metrics_port)[0] != 200:
            assert time.monotonic() < deadline, "did not become healthy again"
            time.sleep(0.2)
    finally:
        store.release.set()
        daemon.stop()


@pytest.mark.filterwarnings("ignore::pytest.PytestUnhandledThreadExceptionWarning")
def test_a_capture_thread_that_dies_is_restarted(tmp_path: Path, vtest: Path) -> None:
    """A bug that escapes the capture loop (here: its observer raises) ends that thread; the
    supervisor restarts it, counts it, and the camera is scored again."""
    cfg = parse_daemon_config({
        "cameras": {"door": {"source": str(vtest), "loop": True}},
        "metrics": {"port": 0}, "storage": {"path": str(tmp_path / "store")}}, "test.toml")
    daemon = Daemon(cfg, open(tmp_path / "stdout", "w"), scorer=Always)
    daemon.start()
    try:
        capture = daemon._captures["door"][0]
        observer = capture.observer

        class Broken:
            def __getattr__(self, name: str) -> Any:
                if name == "frame_read":
                    raise RuntimeError("injected capture fault")
                return getattr(observer, name)

        capture.observer = Broken()  # type: ignore[assignment]
        capture.join(10)
        assert not capture.is_alive() and not capture.finished
        daemon.supervise()
        assert daemon._captures["door"][0] is not capture
        assert daemon.registry.get_sample_value("stream_detector_thread_errors_total",
                                                {"thread": "capture-door"}) == 1
        read = daemon.registry.get_sample_value("stream_detector_frames_read_total",
                                                {"camera": "door"}) or 0
        deadline = time.monotonic() + 10
        while (daemon.registry.get_sample_value("stream_detector_frames_read_total",
                                                {"camera": "door"}) or 0) < read + 5:
            assert time.monotonic() < deadline, "the restarted capture reads nothing"
            time.sleep(0.1)
    finally:
        daemon.stop()
