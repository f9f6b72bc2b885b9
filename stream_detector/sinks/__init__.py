"""Where events leave the daemon: the Sink protocol, and the Publisher that drains the event store.

Sinks never import the store; the Publisher sees it only through the small `Outbox` protocol.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Sequence
from typing import Any, Protocol

log = logging.getLogger("stream_detector.sinks")


class Sink(Protocol):
    """An output. Methods must not raise on transient faults (broker down): they report or drop."""

    name: str

    def deliver_event(self, seq: int, payload: dict[str, Any]) -> bool:
        """True only once the event is safely handed over (for MQTT: acknowledged by the broker)."""
        ...

    def anomaly_state(self, camera: str, on: bool) -> None: ...

    def score(self, camera: str, value: float) -> None: ...

    def snapshot(self, camera: str, jpeg: bytes) -> None: ...

    def start(self) -> None: ...

    def stop(self) -> None: ...


class PendingEvent(Protocol):
    @property
    def seq(self) -> int: ...

    @property
    def payload(self) -> dict[str, Any]: ...


class Outbox(Protocol):
    """What the Publisher needs from the event store."""

    def unpublished(self, limit: int = ...) -> Sequence[PendingEvent]: ...

    def mark_published(self, seq: int) -> None: ...


class Publisher:
    """Delivers stored events through one sink, strictly in sequence order, at least once.

    The store keeps a single `published` flag, so one Publisher drives one sink: the one that
    needs acknowledged delivery (MQTT when configured, else stdout). Best-effort sinks next to it
    (stdout beside MQTT) are written directly when the event is appended, so a broker outage never
    holds them up. On a failed delivery the Publisher backs off and retries the *same* event, so
    order survives outages; an event may be delivered twice around a reconnect.
    """

    def __init__(self, outbox: Outbox, sink: Sink, *, batch: int = 100, min_backoff: float = 0.25,
                 max_backoff: float = 5.0, idle_poll: float = 5.0) -> None:
        self.outbox = outbox
        self.sink = sink
        self.delivered = 0
        self.failures = 0
        self._batch = batch
        self._min_backoff = min_backoff
        self._max_backoff = max_backoff
        self._idle_poll = idle_poll  # also picks up events whose wake() was missed
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._flush_until = 0.0
        self._failing = False
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name=f"publisher-{self.sink.name}",
                                        daemon=True)
        self._thread.start()

    def wake(self) -> None:
        """Signal new events, or that the sink is back (e.g. from MqttSink's on_state)."""
        self._wake.set()

    def stop(self, timeout: float = 5.0) -> bool:
        """Deliver what can be delivered within `timeout`, then stop; True if the thread ended."""
        self._flush_until = time.monotonic() + timeout
        self._stop.set()
        self._wake.set()
        if self._thread is None:
            return True
        self._thread.join(timeout + 1.0)
        return not self._thread.is_alive()

    def _run(self) -> None:
        backoff = self._min_backoff
        while True:
            self._wake.clear()
            sent, failed = self._drain()
            if self._stop.is_set():
                if failed or sent == 0 or time.monotonic() >= self._flush_until:
                    return
            elif failed:
                self._wake.wait(backoff)  # wake() on reconnect cuts the backoff short
                backoff = min(backoff * 2, self._max_backoff)
            else:
                backoff = self._min_backoff
                if sent == 0:
                    self._wake.wait(self._idle_poll)

    def _drain(self) -> tuple[int, bool]:
        """Deliver one batch in order; stop at the first failure. Returns (delivered, failed)."""
        sent = 0
        for event in self.outbox.unpublished(self._batch):
            if not self._deliver(event):
                self._set_failing(True)
                return sent, True
            self.outbox.mark_published(event.seq)
            sent += 1
            self.delivered += 1
            self._set_failing(False)
        return sent, False

    def _deliver(self, event: PendingEvent) -> bool:
        try:
            ok = self.sink.deliver_event(event.seq, event.payload)
        except Exception:  # a buggy sink must not kill the thread; it is retried like a fault
            log.exception("sink %s raised while delivering event %d", self.sink.name, event.seq)
            ok = False
        if not ok:
            self.failures += 1
        return ok

    def _set_failing(self, failing: bool) -> None:
        if failing == self._failing:
            return
        self._failing = failing
        if failing:
            log.warning("sink %s: delivery failing; retrying in order with backoff", self.sink.name)
        else:
            log.info("sink %s: delivering again", self.sink.name)
