"""A camera's sources from its config: the backend, resizing, the scored and the main stream."""

from __future__ import annotations

from pathlib import Path

from stream_detector.capture import (
    FFmpegSource,
    OpenCVSource,
    ResizedSource,
    capture_backend,
    main_stream_config,
    scored_config,
    source_for,
)
from stream_detector.config import CameraConfig


def test_camera_width_height_resize_frames_after_decoding(vtest: Path) -> None:
    from stream_detector.capture import source_for

    source = source_for(CameraConfig(source=str(vtest), realtime=False, width=384, height=288))
    source.open()
    try:
        frame = source.read()
        assert frame is not None and frame.shape == (288, 384, 3)
        assert source.stream_time == 0.0
    finally:
        source.close()
    plain = source_for(CameraConfig(source=str(vtest), realtime=False))
    plain.open()
    try:
        frame = plain.read()
        assert frame is not None and frame.shape == (576, 768, 3)
    finally:
        plain.close()


def test_capture_choice_and_from_config(vtest: Path) -> None:
    auto = {u: capture_backend(CameraConfig(source=u)) for u in ("rtsp://cam/1", str(vtest), "0")}
    assert auto == {"rtsp://cam/1": "ffmpeg", str(vtest): "opencv", "0": "opencv"}
    assert capture_backend(CameraConfig(source="rtsp://cam/1", capture="opencv")) == "opencv"
    assert capture_backend(CameraConfig(source=str(vtest), capture="ffmpeg")) == "ffmpeg"
    cam = CameraConfig(source="rtsp://cam/1", capture="ffmpeg", hwaccel="cuda", stale_after=4.0,
                       width=384, height=288)
    src = source_for(cam)
    assert isinstance(src, ResizedSource) and isinstance(src.inner, FFmpegSource)
    assert (src.inner.hwaccel, src.inner.kind) == ("cuda", "stream")
    assert src.inner.read_timeout > cam.stale_after
    assert isinstance(source_for(CameraConfig(source=str(vtest))), OpenCVSource)
    assert isinstance(source_for(CameraConfig(source="demo", capture="ffmpeg")).inner,  # type: ignore[attr-defined]
                      OpenCVSource)  # the demo stream stays as it is


def test_the_scored_stream_is_detect_source_and_the_main_stream_keeps_its_size() -> None:
    cam = CameraConfig(source="rtsp://cam/main", detect_source="rtsp://cam/sub", width=320,
                       height=240, capture="ffmpeg", hwaccel="cuda", realtime=False)
    scored, main = scored_config(cam), main_stream_config(cam)
    assert (scored.source, scored.width, scored.capture, scored.hwaccel) == (
        "rtsp://cam/sub", 320, "ffmpeg", "cuda")
    assert main is not None and (main.source, main.width, main.height, main.hwaccel) == (
        "rtsp://cam/main", 0, 0, "cuda")
    plain = CameraConfig(source="rtsp://cam/main")
    assert scored_config(plain) is plain and main_stream_config(plain) is None
