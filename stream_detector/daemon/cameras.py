"""A running camera as the daemon keeps it (its capture thread, what stops it, its models, how to
make the thread again), what its capture loop reports, as metrics, and its state for the review page.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable
from typing import Any, NamedTuple

from stream_detector.capture import CaptureLoop
from stream_detector.daemon.metrics import Metrics
from stream_detector.model import LoadedModel
from stream_detector.outputs import EventStore, Writer


class CameraRuntime(NamedTuple):
    capture: CaptureLoop  # the camera's capture thread
    stop: threading.Event  # set: its capture thread ends
    models: tuple[LoadedModel, ...]  # what it was started with: a reload restarts it when one changed
    make: Callable[[], CaptureLoop]  # a new capture thread, when this one died of a bug


def checksum(models: Iterable[LoadedModel]) -> tuple[str, ...]:
    return tuple(str(m.metadata["files"]["model.pt"]["sha256"]) for m in models)


class CaptureMetrics:
    """What a capture loop reports, as metrics (losses themselves travel in the frame queue)."""

    def __init__(self, metrics: Metrics) -> None:
        self.frame_read = metrics.frame_read
        self.frame_dropped = metrics.frame_dropped
        self.frames_skipped = metrics.frames_skipped
        self.stream_state = metrics.stream_state
        self.reconnecting = metrics.reconnecting

    def resolution_changed(self, camera: str, width: int, height: int) -> None:
        pass  # the worker sees the new size on the next frame and rebuilds the scorer


def camera_states(cameras: list[str], metrics: Metrics, writer: Writer,
                  store: EventStore) -> list[dict[str, Any]]:
    """Each camera's stream state, latest score and last event, for /api/cameras."""
    _, detail = metrics.readiness(1e9)
    out = []
    for name in cameras:
        last = store.events(camera=name, limit=1)
        ev = last[0] if last else None
        out.append({
            "name": name,
            "stream_up": bool(detail["cameras"].get(name, {}).get("stream_up", False)),
            "score": writer.latest_score(name),
            "anomaly": bool(ev and ev["open"]),
            "last_event": None if ev is None else {
                "id": ev["id"], "start_time": ev["start_time"], "end_time": ev["end_time"],
                "verdict": ev["verdict"], "has_clip": ev["has_clip"]},
        })
    return out
