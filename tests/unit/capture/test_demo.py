"""The demo stream: the object is drawn into its frames only."""

from __future__ import annotations

from pathlib import Path

from stream_detector.capture import (
    OpenCVSource,
)


def test_demo_source_injects_the_object_only_in_its_frames(vtest: Path) -> None:
    from stream_detector.capture import DemoSource, Injection

    plain = OpenCVSource(str(vtest), realtime=False)
    demo = DemoSource(OpenCVSource(str(vtest), realtime=False), Injection(2, 4), period=795)
    plain.open(), demo.open()
    try:
        changed = []
        for _ in range(6):
            a, b = plain.read(), demo.read()
            assert a is not None and b is not None
            changed.append(bool((a != b).any()))
        assert changed == [False, False, True, True, False, False]
        assert demo.stream_time == plain.stream_time
    finally:
        plain.close(), demo.close()
