"""Clips: made once the post-capture is recorded (or at the deadline, or at once when hurried), from
the segments that hold the event and its margins; joined whole or not at all; a failure counted.
And the writer: a held end keeps its camera's later messages behind it, not other cameras'."""

from __future__ import annotations

import subprocess
import threading
import time
from functools import partial
from pathlib import Path

import pytest

from prometheus_client import CollectorRegistry

from stream_detector.capture import Segment, SegmentRing
from stream_detector.daemon import Metrics
from stream_detector.messages import Event, EventOut
from stream_detector.outputs import Clipper, ClipResult, EventStore, Writer, event_payload
from stream_detector.outputs.clips import assemble


def event(kind: str, eid: str = "ev1", camera: str = "door", start: float = 100.0,
          end: float | None = None) -> Event:
    return Event(eid, camera, kind, start, 0.0, end, end, 3.0, 1, None, 2.0)


class Joins:
    def __init__(self) -> None:
        self.calls: list[list[Segment]] = []

    def __call__(self, segments: list[Segment], out: Path) -> None:
        self.calls.append(segments)
        out.write_bytes(b"mp4")


def add(ring: SegmentRing, name: str, start: float, end: float) -> Segment:
    seg = Segment(ring.directory / name, start, end)
    ring.add(seg)
    return seg


def test_a_clip_waits_for_its_post_capture_then_holds_the_event_and_its_margins(tmp_path: Path) -> None:
    now = [110.0]
    ring = SegmentRing(tmp_path / "ring", keep=1e9, clock=lambda: now[0])
    joins, results = Joins(), []
    clipper = Clipper(tmp_path / "clips", clock=lambda: now[0], join=joins)
    clipper.camera("door", ring, pre=5.0, post=5.0)
    for i in range(40, 56):  # 80 .. 112 s
        add(ring, f"{i}.ts", i * 2.0, i * 2.0 + 2)
    clipper.begin(event("start", end=None))
    clipper.finish(event("end", end=108.0), results.append)
    clipper._make_due()
    assert results == []  # 113 s (end + post) is not recorded yet
    add(ring, "56.ts", 112.0, 114.0)
    clipper._make_due()
    assert [r.path for r in results] == [str(tmp_path / "clips" / "ev1.mp4")]
    assert [s.start for s in joins.calls[0]] == [94.0, 96.0, 98.0, 100.0, 102.0, 104.0, 106.0,
                                                 108.0, 110.0, 112.0]  # 95 .. 113 s covered
    assert results[0].start == 94.0 and results[0].end == 114.0


def test_hurry_makes_the_clip_from_what_is_recorded_and_a_failure_is_counted(tmp_path: Path) -> None:
    now = [110.0]
    ring = SegmentRing(tmp_path / "ring", keep=1e9, clock=lambda: now[0])
    failed: list[str] = []
    results: list[ClipResult] = []
    clipper = Clipper(tmp_path / "clips", failed.append, clock=lambda: now[0], join=Joins())
    clipper.camera("door", ring, pre=5.0, post=5.0)
    clipper.finish(event("end", end=108.0), results.append)  # nothing was recorded at all
    clipper.hurry("door")
    clipper._make_due()
    assert results == [ClipResult("ev1", "door", None)] and failed == ["door"]


def ts_segment(path: Path, seconds: int) -> None:
    subprocess.run(["ffmpeg", "-hide_banner", "-loglevel", "error", "-f", "lavfi", "-i",
                    f"testsrc=size=160x120:rate=10:duration={seconds}", "-c:v", "libx264",
                    "-f", "mpegts", "-y", str(path)], check=True)


def test_assemble_joins_segments_without_leaving_a_partial_file(tmp_path: Path) -> None:
    parts = [tmp_path / "a.ts", tmp_path / "b.ts"]
    for p in parts:
        ts_segment(p, 1)
    out = tmp_path / "clips" / "x.mp4"
    out.parent.mkdir()
    assemble([Segment(p, 0, 1) for p in parts], out)
    probe = subprocess.run(["ffprobe", "-v", "error", "-count_frames", "-show_entries",
                            "stream=codec_name,nb_read_frames", "-of", "csv=p=0", str(out)],
                           capture_output=True, text=True, check=True)
    assert probe.stdout.strip() == "h264,20"
    (tmp_path / "bad.ts").write_bytes(b"not video")
    try:
        assemble([Segment(tmp_path / "bad.ts", 0, 1)], tmp_path / "clips" / "y.mp4")
    except OSError:
        pass
    else:
        raise AssertionError("joining garbage must fail")
    assert sorted(p.name for p in out.parent.iterdir()) == ["x.mp4"]  # no half clip, no list


class SlowClips(Clipper):
    """Records the camera as clipped; each clip is released by the test."""

    def __init__(self, directory: Path) -> None:
        super().__init__(directory)
        self.finished: list[tuple[Event, object]] = []
        self.hurried: list[str | None] = []

    def records(self, camera: str) -> bool:
        return camera == "door"

    def finish(self, event: Event, done: object) -> None:
        self.finished.append((event, done))

    def hurry(self, camera: str | None = None) -> None:
        self.hurried.append(camera)


def test_a_held_end_keeps_its_cameras_later_messages_behind_it_only(tmp_path: Path) -> None:
    store = EventStore(tmp_path / "events.sqlite")
    clips = SlowClips(tmp_path / "clips")
    stored: list[int] = []
    writer = Writer(store, partial(event_payload, host="cam-host"), Metrics(CollectorRegistry()),
                    lambda seq, cam, t: stored.append(seq), lambda cam, v: None, None, clips=clips)
    writer.start()
    try:
        for ev in (event("start"), event("end", end=108.0), event("start", "ev2", start=109.0),
                   event("start", "yard1", camera="yard")):
            writer.put(EventOut(ev, None, time.monotonic()))
        deadline = time.monotonic() + 5
        while len(stored) < 2 and time.monotonic() < deadline:
            time.sleep(0.02)
        time.sleep(0.2)
        rows = [(r.event_id, r.type) for r in store.query()]
        assert rows == [("ev1", "start"), ("yard1", "start")]  # ev2 waits behind ev1's end
        assert clips.hurried == ["door"]  # its start asked for the clip at once
        (ended, done), = clips.finished
        assert callable(done)
        done(ClipResult("ev1", "door", str(tmp_path / "clips" / "ev1.mp4"), 95.0, 114.0))
        while len(stored) < 4 and time.monotonic() < deadline:
            time.sleep(0.02)
    finally:
        writer.finish()
    rows = store.query()
    assert [(r.event_id, r.type) for r in rows] == [
        ("ev1", "start"), ("yard1", "start"), ("ev1", "end"), ("ev2", "start")]
    after = rows[2].payload["after"]
    assert after["has_clip"] and after["clip"].endswith("ev1.mp4") and after["clip_start"] == 95.0
    assert not threading.active_count() > 50


def test_assemble_works_under_a_relative_storage_path(tmp_path: Path,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    """The embedded default stores under var/stream-detector, relative to the working folder."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "var" / "recordings").mkdir(parents=True)
    (tmp_path / "var" / "clips").mkdir()
    part = Path("var") / "recordings" / "a.ts"
    ts_segment(part, 1)
    out = Path("var") / "clips" / "x.mp4"
    assemble([Segment(part, 0, 1)], out)
    assert out.is_file() and out.stat().st_size > 0

