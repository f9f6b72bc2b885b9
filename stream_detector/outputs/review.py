"""Operator verdicts on events ("false_alarm" or "confirmed"), from the HTTP API and from MQTT alike:
checked, then stored as messages of their own, which the publisher sends in order with the events.
"""

from __future__ import annotations

import json
import logging
import re
import threading
import time
from collections.abc import Callable
from typing import Any

from stream_detector.outputs.event_index import VERDICTS
from stream_detector.outputs.store import EventStore

log = logging.getLogger(__name__)

EVENT_ID = re.compile(r"^[A-Za-z0-9_-]{1,64}$")  # what the daemon makes (16 hex digits) and more


class VerdictError(Exception):
    """A verdict refused: `status` is the HTTP status that says why (400, 404, 409)."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


class Reviews:
    """Sets verdicts: `set` from any thread (the store serialises writes); `wake` tells the
    publisher there is something to send; `rejected(source)` counts refusals."""

    def __init__(self, store: EventStore, wake: Callable[[], None] = lambda: None,
                 rejected: Callable[[str], None] = lambda source: None,
                 clock: Callable[[], float] = time.time) -> None:
        self.store = store
        self.wake = wake
        self.rejected = rejected
        self.clock = clock
        self._lock = threading.Lock()
        self._warned = 0.0

    def event(self, event_id: str) -> dict[str, Any]:
        """The event with its timeline; VerdictError 404 when there is none by that id."""
        if not EVENT_ID.match(event_id):
            raise VerdictError(404, "no such event (ids are letters, digits, '_' and '-')")
        found = self.store.events(ids=(event_id,), limit=1)
        if not found:
            raise VerdictError(404, f"no event {event_id}")
        return found[0]

    def set(self, event_id: str, verdict: Any, source: str,
            camera: str | None = None) -> dict[str, Any]:
        """Store `verdict` on the event; returns the event as it now is."""
        try:
            if not isinstance(verdict, str) or verdict not in VERDICTS:
                raise VerdictError(400, f"verdict must be one of {', '.join(VERDICTS)}")
            with self._lock:  # two verdicts at once: both stored, in the order they were checked
                event = self.event(event_id)
                if camera is not None and event["camera"] != camera:
                    raise VerdictError(409, f"event {event_id} is camera {event['camera']}'s, "
                                            f"not {camera}'s")
                stored = self.store.append_verdict(event_id, event["camera"], verdict, source,
                                                   self.clock())
        except VerdictError:
            self.rejected(source)
            raise
        self.wake()
        log.info("event %s (camera %s) marked %s via %s", event_id, event["camera"], verdict,
                 source)
        return {**event, "verdict": stored["verdict"], "verdict_time": stored["time"]}

    def from_mqtt(self, camera: str, payload: bytes) -> None:
        """`<prefix>/<camera>/verdict/set` with {"id": ..., "verdict": ...}: stored, or one
        warning line (at most one every 10 s: a client repeating a bad message cannot flood)."""
        try:
            body = json.loads(payload)
            if not isinstance(body, dict) or not isinstance(body.get("id"), str):
                raise ValueError
        except (UnicodeDecodeError, ValueError):
            self.rejected("mqtt")
            self._warn(camera, 'payload must be JSON {"id": EVENT_ID, "verdict": VERDICT}')
            return
        try:
            self.set(body["id"], body.get("verdict"), "mqtt", camera)
        except VerdictError as exc:
            self._warn(camera, exc.message)

    def _warn(self, camera: str, why: str) -> None:
        now = time.monotonic()
        if now - self._warned >= 10.0 or not self._warned:
            self._warned = now
            log.warning("MQTT verdict for camera %s refused: %s", camera, why)
