"""The capture loop against a real RTSP server (GStreamer) that dies, hangs and comes back, with
each capture: OpenCV in-process and an ffmpeg child process."""

from __future__ import annotations

import os
import shutil
import signal
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from rtsp_helpers import (
    Recorder,
    RtspServer,
    require_ffmpeg,
    require_gi_python,
    serving,
    wait_frame,
)

from stream_detector.capture import (
    Backoff,
    CaptureLoop,
    FFmpegSource,
    FrameQueue,
    FrameSource,
    OpenCVSource,
)
from stream_detector.messages import Frame

pytestmark = pytest.mark.integration

STALE_AFTER = 2.0


@pytest.fixture(scope="module")
def gi_python() -> str:
    return require_gi_python()


@pytest.fixture()
def server(gi_python: str, vtest: Path, tmp_path: Path) -> Iterator[RtspServer]:
    with serving(vtest, tmp_path / "rtsp_server.log") as srv:
        yield srv


@pytest.fixture(params=["opencv", "ffmpeg"])
def capture(server: RtspServer, request: pytest.FixtureRequest
            ) -> Iterator[Callable[[], tuple[CaptureLoop, FrameQueue[Frame], Recorder]]]:
    stop = threading.Event()
    loops: list[CaptureLoop] = []
    if request.param == "ffmpeg":
        require_ffmpeg()

    def open_source() -> FrameSource:
        # The source times out after the loop does: the loop decides, as in the daemon.
        kind = FFmpegSource if request.param == "ffmpeg" else OpenCVSource
        return kind(server.url, open_timeout=5, read_timeout=STALE_AFTER + 1)

    def start() -> tuple[CaptureLoop, FrameQueue[Frame], Recorder]:
        q: FrameQueue[Frame] = FrameQueue(32)
        rec = Recorder()
        loop = CaptureLoop("door", open_source, q, stop, rec, stale_after=STALE_AFTER,
                           backoff=Backoff(initial=0.2, maximum=1.0))
        loop.start()
        loops.append(loop)
        return loop, q, rec

    yield start
    stop.set()
    for loop in loops:
        loop.join(5)
        assert not loop.is_alive(), "capture loop did not stop"


def test_reconnects_after_the_server_is_killed_and_restarted(server: RtspServer, capture) -> None:  # type: ignore[no-untyped-def]
    loop, q, rec = capture()
    frame = wait_frame(q, 0.0, 20)
    assert frame.image.shape == (288, 384, 3) and frame.camera == "door"
    assert rec.counts["up"] == 1 and rec.counts["size 384x288"] == 1

    server.kill()
    assert rec.wait("down", 1, STALE_AFTER + 2), "stream loss not reported"
    assert loop.is_alive()

    server.start()
    restarted = time.monotonic()
    frame = wait_frame(q, restarted, 25)
    assert frame.image.shape == (288, 384, 3)
    assert rec.counts["up"] == 2 and rec.counts["reconnecting"] >= 1
    assert loop.is_alive()


def test_a_hung_server_counts_as_lost_and_recovers(server: RtspServer, capture) -> None:  # type: ignore[no-untyped-def]
    loop, q, rec = capture()
    wait_frame(q, 0.0, 20)

    server.signal(signal.SIGSTOP)  # the socket stays open but nothing comes: only timeouts notice
    stopped = time.monotonic()
    try:
        assert rec.wait("down", 1, STALE_AFTER + 3), "hung stream not reported"
        assert time.monotonic() - stopped >= 1.0  # a live stream is not declared lost too early
    finally:
        server.signal(signal.SIGCONT)
    resumed = time.monotonic()
    wait_frame(q, resumed, 25)
    assert rec.counts["up"] == 2 and loop.is_alive()


def _logging_wrappers(bin_dir: Path, log: Path, sizeless_quick_probe: bool) -> None:
    """ffprobe and ffmpeg wrappers that log their arguments, then run the real programs; with
    `sizeless_quick_probe`, a probe limited by -analyzeduration answers as for a stream whose
    parameter sets have not come yet (a video stream of size 0x0)."""
    bin_dir.mkdir()
    for name in ("ffprobe", "ffmpeg"):
        real = shutil.which(name)
        assert real is not None
        sizeless = ('case " $* " in *" -analyzeduration "*) '
                    'echo \'{"streams": [{"width": 0, "height": 0}]}\'; exit 0;; esac\n'
                    if name == "ffprobe" and sizeless_quick_probe else "")
        script = bin_dir / name
        script.write_text(f'#!/bin/sh\necho "{name} $*" >> "{log}"\n{sizeless}exec "{real}" "$@"\n')
        script.chmod(0o755)


@pytest.mark.parametrize("sizeless_quick_probe", [False, True])
def test_ffmpeg_open_probes_a_stream_briefly_and_longer_only_when_it_must(
        server: RtspServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        sizeless_quick_probe: bool) -> None:
    require_ffmpeg()
    log = tmp_path / "calls.log"
    _logging_wrappers(tmp_path / "bin", log, sizeless_quick_probe)
    monkeypatch.setenv("PATH", f"{tmp_path / 'bin'}{os.pathsep}{os.environ['PATH']}")
    source = FFmpegSource(server.url, open_timeout=10, read_timeout=5)
    try:
        source.open()
        assert source.grab()
        image = source.retrieve()
        assert image is not None and image.shape == (288, 384, 3)
    finally:
        source.close()
    calls = log.read_text().splitlines()
    probes = [c for c in calls if c.startswith("ffprobe ")]
    starts = [c for c in calls if c.startswith("ffmpeg ")]
    assert "-analyzeduration" in probes[0].split()  # the brief probe comes first
    assert len(starts) == 1
    if sizeless_quick_probe:  # probed again at FFmpeg's default, and ffmpeg analyses as long
        assert len(probes) == 2 and "-analyzeduration" not in probes[1].split()
        assert "-analyzeduration" not in starts[0].split()
    else:
        assert len(probes) == 1 and "-analyzeduration" in starts[0].split()
