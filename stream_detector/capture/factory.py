"""A camera's sources from its config: which reads it (the demo, an ffmpeg process or OpenCV),
resized when it says so; the stream its model scores, and the main stream its snapshots show; one
frame read from a camera to prove it works (`check-config --probe`).
"""

from __future__ import annotations

import dataclasses
import threading

import numpy as np

from stream_detector.capture.demo import DEMO_SOURCE, DEMO_VIDEO, DemoSource, Injection
from stream_detector.capture.ffmpeg import FFmpegSource, ffmpeg_missing
from stream_detector.capture.opencv import OpenCVSource, opencv_source
from stream_detector.capture.source import FrameSource, ResizedSource, redact, source_kind
from stream_detector.config import CameraConfig
from stream_detector.errors import SourceError


def capture_backend(camera: CameraConfig) -> str:
    """"opencv" or "ffmpeg" for a camera: `auto` picks ffmpeg for network streams when installed."""
    if camera.capture != "auto":
        return camera.capture
    return "ffmpeg" if source_kind(camera.source) == "stream" and not ffmpeg_missing() else "opencv"


def source_for(cfg: CameraConfig) -> FrameSource:
    """The camera's source: the demo stream, or its `capture` (an ffmpeg process or OpenCV), resized
    if the camera sets width/height."""
    source: FrameSource
    if cfg.source == DEMO_SOURCE:
        inner = OpenCVSource(str(DEMO_VIDEO), realtime=cfg.realtime, loop=True,
                             read_timeout=cfg.stale_after + 2)
        source = DemoSource(inner, Injection(300, 380), period=795)
    elif capture_backend(cfg) == "ffmpeg":
        source = FFmpegSource.from_config(cfg)
    else:
        source = opencv_source(cfg)
    return ResizedSource(source, cfg.width, cfg.height) if cfg.width else source


def scored_config(cfg: CameraConfig) -> CameraConfig:
    """The camera as its scoring capture reads it: `detect_source` when set, else `source`."""
    if not cfg.detect_source:
        return cfg
    return dataclasses.replace(cfg, source=cfg.detect_source, detect_source="")


def main_stream_config(cfg: CameraConfig) -> CameraConfig | None:
    """The main stream that snapshots show, for a camera that scores its `detect_source` (None
    otherwise); read at its own size: width/height resize the scored frames only."""
    if not cfg.detect_source:
        return None
    return dataclasses.replace(cfg, detect_source="", width=0, height=0)


def probe(cam: CameraConfig, name: str, timeout: float) -> tuple[int, int]:
    """Open a camera's source once and read one frame within `timeout` seconds: (width, height)."""
    image = probe_frame(cam, name, timeout)
    return int(image.shape[1]), int(image.shape[0])


def probe_frame(cam: CameraConfig, name: str, timeout: float) -> np.ndarray:
    """Open a camera's source once and read one frame within `timeout` seconds.

    The read runs on its own thread so a hung camera costs `timeout`, not forever; the thread is not
    a daemon (see loop._Reader), so exit waits for the source's own timeouts to free it.
    """
    result: list[np.ndarray | SourceError | None] = []
    source = source_for(cam)

    def attempt() -> None:
        try:
            source.open()
            result.append(source.read())
        except SourceError as exc:
            result.append(exc)
        finally:
            source.close()

    thread = threading.Thread(target=attempt, name=f"probe-{name}")
    thread.start()
    thread.join(timeout)
    what = redact(cam.source)
    if thread.is_alive() or not result:
        source.interrupt()  # a reader process is killed now; in-process OpenCV ends by its timeout
        raise SourceError(f"{what}: no frame within {timeout:g}s")
    if isinstance(result[0], SourceError):
        raise result[0]
    if result[0] is None:
        raise SourceError(f"{what}: opened, but no frame could be read or decoded")
    return result[0]
