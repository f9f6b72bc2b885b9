"""What a source URI names, and credentials kept out of its name."""

from __future__ import annotations

from stream_detector.capture import (
    redact,
    source_kind,
)


def test_source_kind_and_redaction() -> None:
    assert [source_kind(u) for u in ("0", "rtsp://h/x", "HTTP://h/x.mjpg", "udp://@:1234",
                                     "clips/a.mp4")] == ["device", "stream", "stream", "stream", "file"]
    assert redact("rtsp://u:p@h:554/x") == "rtsp://u:***@h:554/x"
    assert redact("rtsp://h/x") == "rtsp://h/x"
