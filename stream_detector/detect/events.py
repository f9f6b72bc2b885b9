"""Scores -> anomaly events (start / update / end) for one camera, with hysteresis.

Pure logic: time comes from the scores themselves (stream time for durations, wall time for
payloads), so the same footage always yields the same events.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from dataclasses import dataclass, replace

from stream_detector.config import CameraConfig
from stream_detector.messages import Box, Event, FrameScore


@dataclass(frozen=True)
class EventPolicy:
    threshold: float  # score that (held for min_duration) starts an event
    low_threshold: float  # score under which (held for cooldown) the event ends; <= threshold
    min_duration: float = 0.5  # seconds over threshold before `start`
    cooldown: float = 2.0  # seconds under the low threshold before `end`
    update_interval: float = 5.0  # at most one `update` per this many seconds


def policy_for(threshold: float, cfg: CameraConfig) -> EventPolicy:
    """A camera's policy at `threshold`: the daemon and `eval`'s replay use the same one.

    The low threshold is `low_threshold_ratio` of the way from 0 for a positive threshold and stays
    below it for a negative one (a score is a baseline z-score and may be < 0).
    """
    low = threshold - (1.0 - cfg.low_threshold_ratio) * abs(threshold)
    return EventPolicy(threshold, low, cfg.min_duration, cfg.cooldown, cfg.update_interval)


def _union(a: Box | None, b: Box | None) -> Box | None:
    if a is None or b is None:
        return a or b
    return Box(min(a.x0, b.x0), min(a.y0, b.y0), max(a.x1, b.x1), max(a.y1, b.y1))


class EventTracker:
    """Per-camera state machine: idle -> pending -> active -> (cooling) -> idle."""

    def __init__(self, camera: str, policy: EventPolicy,
                 new_id: Callable[[], str] = lambda: uuid.uuid4().hex[:16]) -> None:
        if policy.low_threshold > policy.threshold:
            raise ValueError("low_threshold must be <= threshold")
        self.camera = camera
        self.policy = policy
        self._new_id = new_id
        self._pending_since: FrameScore | None = None
        self._pending_box: Box | None = None
        self._pending_peak: FrameScore | None = None
        self._active: Event | None = None
        self._below_since: float | None = None
        self._last_update = 0.0

    @property
    def active(self) -> Event | None:
        return self._active

    def observe(self, s: FrameScore) -> list[Event]:
        """Feed one frame score; returns the events it causes (usually none)."""
        p = self.policy
        if self._active is None:
            if s.score <= p.threshold or s.warmup:
                self._pending_since = None
                return []
            if self._pending_since is None:
                self._pending_since, self._pending_box, self._pending_peak = s, None, s
            self._pending_box = _union(self._pending_box, s.box)
            if self._pending_peak is None or s.score > self._pending_peak.score:
                self._pending_peak = s
            if s.stream_time - self._pending_since.stream_time < p.min_duration:
                return []
            first, peak = self._pending_since, self._pending_peak or s
            self._active = Event(self._new_id(), self.camera, "start", first.wall_time, first.stream_time,
                                 None, None, peak.score, peak.index, self._pending_box, s.score)
            self._pending_since, self._below_since = None, None
            self._last_update = s.stream_time
            return [self._active]
        ev = self._active
        if s.score > ev.peak_score:
            ev = replace(ev, peak_score=s.score, peak_index=s.index)
        if s.score > p.low_threshold:
            ev = replace(ev, box=_union(ev.box, s.box))
            self._below_since = None
        elif self._below_since is None:
            self._below_since = s.stream_time
        self._active = replace(ev, score=s.score)
        if self._below_since is not None and s.stream_time - self._below_since >= p.cooldown:
            return [self._finish(s.wall_time, s.stream_time, s.score, "cooldown")]
        if s.stream_time - self._last_update >= p.update_interval:
            self._last_update = s.stream_time
            return [replace(self._active, type="update", update_wall=s.wall_time)]
        return []

    def retune(self, policy: EventPolicy) -> None:
        """Judge by another policy from now on (another model scores, in its own units): an open
        event carries over, keeping its id; one still pending starts over."""
        if policy.low_threshold > policy.threshold:
            raise ValueError("low_threshold must be <= threshold")
        self.policy = policy
        self._pending_since, self._pending_box, self._pending_peak = None, None, None

    def close(self, wall_time: float, stream_time: float, reason: str = "closed") -> list[Event]:
        """End an active event now (stream lost, shutdown) so no event is left open."""
        if self._active is None:
            return []
        return [self._finish(wall_time, stream_time, self._active.score, reason)]

    def _finish(self, wall_time: float, stream_time: float, score: float, reason: str) -> Event:
        assert self._active is not None
        ended = replace(self._active, type="end", end_wall=wall_time,
                        end_stream=max(stream_time, self._active.start_stream), score=score,
                        reason=reason)
        self._active, self._below_since, self._pending_since = None, None, None
        return ended
