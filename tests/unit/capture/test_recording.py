"""Recording for clips: the segment ring keeps what open events need and forgets the rest; a frame
recorder really encodes segments with ffmpeg; a recorder that cannot record says so once, counts it
and never raises into the capture path."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np

from stream_detector.capture import FrameRecorder, FrameTee, Segment, SegmentRing, StreamRecorder
from stream_detector.messages import Frame, StreamState


def segment(ring: SegmentRing, name: str, start: float, end: float) -> Segment:
    path = ring.directory / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"ts")
    seg = Segment(path, start, end)
    ring.add(seg)
    return seg


def test_the_ring_forgets_old_segments_unless_an_open_event_pinned_them(tmp_path: Path) -> None:
    now = [1000.0]
    ring = SegmentRing(tmp_path / "ring", keep=10.0, clock=lambda: now[0])
    old = segment(ring, "a.ts", 980.0, 982.0)
    pinned = segment(ring, "b.ts", 982.0, 984.0)
    recent = segment(ring, "c.ts", 995.0, 997.0)
    ring.pin("event", 983.0)  # its clip starts inside b.ts
    assert ring.prune() == 1
    assert not old.path.exists() and pinned.path.exists() and recent.path.exists()
    assert ring.covering(983.0, 996.0) == [pinned, recent]
    ring.unpin("event")
    assert ring.prune() == 1 and not pinned.path.exists()
    assert ring.newest_end() == 997.0


def frame(i: int, size: tuple[int, int] = (320, 240)) -> Frame:
    image = np.full((size[1], size[0], 3), (i * 7) % 255, np.uint8)
    return Frame("cam", i, i / 10, time.time(), time.monotonic(), image)


class Receiver:
    def __init__(self) -> None:
        self.items: list[Frame | StreamState] = []

    def put(self, item: Frame | StreamState) -> bool:
        self.items.append(item)
        return True


def test_a_frame_recorder_encodes_what_the_capture_hands_on_into_segments(tmp_path: Path) -> None:
    states: list[tuple[str, bool]] = []
    ring = SegmentRing(tmp_path / "ring", keep=60.0)
    recorder = FrameRecorder("cam", ring, lambda cam, up: states.append((cam, up)), fps=10)
    inner = Receiver()
    tee = FrameTee(inner, recorder)
    recorder.start()
    try:
        for i in range(45):  # 4.5 s at 10 frames/s: two 2 s segments finish
            assert tee.put(frame(i))
            time.sleep(0.1)
        tee.put(StreamState("cam", False, "lost", time.time(), time.monotonic()))
        deadline = time.monotonic() + 10
        while len(ring.covering(0, 2e9)) < 2 and time.monotonic() < deadline:
            time.sleep(0.1)
    finally:
        recorder.stop()
    assert len(inner.items) == 46  # the tee hands everything on, state messages included
    segments = ring.covering(0, 2e9)
    assert len(segments) >= 2 and all(s.path.stat().st_size > 0 for s in segments)
    assert all(0 < s.end - s.start < 4 for s in segments)
    assert states[0] == ("cam", True) and ("cam", False) not in states


def test_a_recorder_that_cannot_record_says_so_once_and_keeps_retrying(tmp_path: Path) -> None:
    states: list[bool] = []
    ring = SegmentRing(tmp_path / "ring", keep=60.0)
    recorder = StreamRecorder("cam", "rtsp://127.0.0.1:1/none", ring,
                              lambda cam, up: states.append(up))
    recorder.backoff.initial = recorder.backoff._base = 0.2
    recorder.start()
    try:
        deadline = time.monotonic() + 15
        while recorder.failures < 1 and time.monotonic() < deadline:
            time.sleep(0.1)
        time.sleep(1.0)  # more attempts fail meanwhile: still one state change
    finally:
        recorder.stop()
    assert states == [False] and recorder.failures == 1
    assert not recorder.is_alive()


def test_a_stream_recorders_password_reaches_ffmpeg_on_a_pipe_never_its_command_line(
        tmp_path: Path) -> None:
    url = "rtsp://viewer:p%23ss%2Fw0rd@127.0.0.1:1/live"
    recorder = StreamRecorder("cam", url, SegmentRing(tmp_path / "ring", keep=60.0),
                              lambda cam, up: None)
    argv = recorder.command(7)
    assert argv[argv.index("-i") + 1] == "pipe:7" and "concat" in argv
    assert not any("w0rd" in a or "viewer" in a for a in argv), argv
    assert "w0rd" not in recorder._redact_text(f"{url}: 401 Unauthorized; p%23ss%2Fw0rd")
    plain = StreamRecorder("cam", "rtsp://127.0.0.1:1/live", recorder.ring, lambda cam, up: None)
    assert plain.command(7)[plain.command(7).index("-i") + 1] == "rtsp://127.0.0.1:1/live"
