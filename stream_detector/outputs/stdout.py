"""Event payloads as JSON lines on a text stream: the output that needs no broker (journald)."""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Sequence
from typing import Any, TextIO

log = logging.getLogger(__name__)


class StdoutSink:
    """Writes one JSON line per event; states, scores and snapshots are not written (too chatty)."""

    name = "stdout"
    takes_snapshots = False

    def __init__(self, stream: TextIO) -> None:
        self._stream = stream
        self._lock = threading.Lock()
        self._broken = False

    def deliver_event(self, seq: int, payload: dict[str, Any]) -> bool:
        line = json.dumps(payload, separators=(",", ":"))
        with self._lock:
            try:
                self._stream.write(line + "\n")
                self._stream.flush()
            except OSError as exc:  # a closed pipe: report it once, keep the daemon running
                if not self._broken:
                    log.warning("cannot write events to %s (%s)", self.name, exc)
                self._broken = True
                return False
            if self._broken:
                log.info("writing events to %s again", self.name)
            self._broken = False
        return True

    def anomaly_state(self, camera: str, on: bool) -> None:
        pass

    def tamper_state(self, camera: str, on: bool) -> None:
        pass

    def score(self, camera: str, value: float) -> None:
        pass

    def snapshot(self, camera: str, jpeg: bytes) -> None:
        pass

    def cameras_changed(self, cameras: Sequence[str]) -> None:
        pass

    def start(self) -> None:
        pass

    def stop(self) -> None:
        pass
