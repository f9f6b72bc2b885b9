"""Where events leave the daemon: the Sink protocol, Sinks (the configured sinks as one), and the
Publisher, the thread that sends the event store's unpublished events through them.

One output path: every message for the outside world (event, then the camera's anomaly state, then
its snapshot) leaves through the Publisher's thread in store order, so nothing overtakes anything,
after an outage too. Sinks never import the store.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, Protocol

from stream_detector.outputs.store import EventStore, StoredEvent

log = logging.getLogger(__name__)


class Sink(Protocol):
    """An output. Methods must not raise on transient faults (broker down): they report or drop."""

    name: str
    takes_snapshots: bool  # False: Sinks does not read snapshot files for it

    def deliver_event(self, seq: int, payload: dict[str, Any]) -> bool:
        """True only once the event is safely handed over (for MQTT: acknowledged by the broker)."""
        ...

    def anomaly_state(self, camera: str, on: bool) -> None: ...

    def tamper_state(self, camera: str, on: bool) -> None:
        """The camera's picture is (or no longer is) tampered with: a camera_tampered event."""
        ...

    def score(self, camera: str, value: float) -> None: ...

    def snapshot(self, camera: str, jpeg: bytes) -> None: ...

    def cameras_changed(self, cameras: Sequence[str]) -> None:
        """The configured cameras (at start-up and after a reload): e.g. discovery configs."""
        ...

    def start(self) -> None: ...

    def stop(self) -> None: ...


class Sinks:
    """The configured sinks, built once. `primary` is the one whose acknowledgement marks an event
    published (MQTT when configured, else stdout); the others get each event once, in order, just
    before it, and their failures are theirs alone.
    """

    def __init__(self, sinks: Sequence[Sink], primary: Sink,
                 delivered: Callable[[int, bool], None] = lambda seq, ok: None) -> None:
        if primary not in sinks:
            raise ValueError("the primary sink must be one of the sinks")
        self.sinks = tuple(sinks)
        self.primary = primary
        self.name = primary.name
        self._delivered = delivered
        self._done: dict[str, int] = {}  # sink name -> last seq handed to it (best-effort sinks)

    def deliver(self, seq: int, payload: dict[str, Any]) -> bool:
        """The event, then (on new/end) the camera's anomaly state and snapshot, sink by sink."""
        snapshot = _SnapshotFile(payload)
        for sink in self.sinks:
            if sink is not self.primary and self._done.get(sink.name, 0) >= seq:
                continue  # a retry of the primary: the others already have it
            ok = self._send(sink, seq, payload, snapshot)
            if sink is self.primary:
                self._delivered(seq, ok)
                if not ok:
                    return False
            self._done[sink.name] = seq
        return True

    def ahead(self, events: Sequence[StoredEvent]) -> None:
        """While the primary is failing, the others still get these events (once, in order)."""
        for sink in self.sinks:
            if sink is self.primary:
                continue
            for e in events:
                if self._done.get(sink.name, 0) < e.seq:
                    self._send(sink, e.seq, e.payload, _SnapshotFile(e.payload))
                    self._done[sink.name] = e.seq

    def score(self, camera: str, value: float) -> None:
        for sink in self.sinks:
            _guarded(sink, "score", lambda s=sink: s.score(camera, value))

    def sync(self, cameras: Sequence[str], states: dict[str, bool]) -> None:
        """Announce the cameras and set their anomaly state (e.g. OFF for all after a restart)."""
        for sink in self.sinks:
            _guarded(sink, "cameras", lambda s=sink: s.cameras_changed(cameras))
            for camera, on in states.items():
                _guarded(sink, "state", lambda s=sink, c=camera, o=on: s.anomaly_state(c, o))
                _guarded(sink, "state", lambda s=sink, c=camera, o=on: s.tamper_state(c, o))

    def _send(self, sink: Sink, seq: int, payload: dict[str, Any], snapshot: _SnapshotFile) -> bool:
        try:
            if not sink.deliver_event(seq, payload):
                return False
            kind = payload["type"]
            camera = (payload.get("after") or {}).get("camera")  # a verdict is only its message
            if kind in ("new", "end") and payload["after"].get("kind") == "camera_tampered":
                sink.tamper_state(camera, kind == "new")
            elif kind in ("new", "end"):
                sink.anomaly_state(camera, kind == "new")
                jpeg = snapshot.read() if sink.takes_snapshots else None
                if jpeg:
                    sink.snapshot(camera, jpeg)
        except Exception:  # noqa: BLE001 - a buggy sink must not kill the thread; retried as a fault
            log.exception("sink %s raised while delivering event %d", sink.name, seq)
            return False
        return True


class _SnapshotFile:
    """An event's snapshot, read from disk at most once and only if a sink wants it."""

    def __init__(self, payload: dict[str, Any]) -> None:
        after = payload.get("after") or {}
        self.path = after.get("snapshot") if payload.get("type") in ("new", "end") else None
        self._data: bytes | None = None

    def read(self) -> bytes | None:
        if self.path and self._data is None:
            try:
                self._data = Path(self.path).read_bytes()
            except OSError as exc:  # pruned or never saved: the event still goes out
                log.debug("snapshot %s not published: %s", self.path, exc)
                self.path = None
        return self._data


def _guarded(sink: Sink, what: str, call: Callable[[], object]) -> None:
    try:
        call()
    except Exception:  # noqa: BLE001 - one sink's bug must not stop the others
        log.exception("sink %s raised on %s", sink.name, what)


class Publisher:
    """Delivers stored events through the sinks, strictly in sequence order, at least once.

    On a failed delivery it backs off and retries the *same* event, so order survives outages; an
    event may be delivered twice around a reconnect. `sync_states` requests are carried out in
    order with the events: after every event stored before the request, before any stored after.
    """

    def __init__(self, store: EventStore, sinks: Sinks, *, batch: int = 100,
                 min_backoff: float = 0.25, max_backoff: float = 5.0, idle_poll: float = 1.0,
                 beat: Callable[[], None] = lambda: None) -> None:
        self.store = store
        self.sinks = sinks
        self.beat = beat
        self._syncs: list[tuple[int, tuple[str, ...], dict[str, bool]]] = []
        self._sync_lock = threading.Lock()
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
        self._thread = threading.Thread(target=self._run, name=f"publisher-{self.sinks.name}",
                                        daemon=True)
        self._thread.start()

    def sync_states(self, after_seq: int, cameras: Sequence[str], states: dict[str, bool]) -> None:
        """Announce `cameras` and publish `states` once every event up to `after_seq` is out."""
        with self._sync_lock:
            self._syncs.append((after_seq, tuple(cameras), dict(states)))
        self._wake.set()

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
            self.beat()
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
        events = self.store.unpublished(self._batch)
        for i, event in enumerate(events):
            self.beat()  # each delivery may wait for an acknowledgement: beat per event
            self._run_syncs(before=event.seq)
            if not self._deliver(event):
                self.sinks.ahead(events[i:])  # stdout beside a broker that is down stays live
                self._set_failing(True)
                return sent, True
            self.store.mark_published(event.seq)
            sent += 1
            self.delivered += 1
            self._set_failing(False)
        if len(events) < self._batch:
            self._run_syncs(before=None)
        return sent, False

    def _run_syncs(self, before: int | None) -> None:
        """The syncs due before event `before` (all of them when the outbox is empty)."""
        with self._sync_lock:
            due = [s for s in self._syncs if before is None or s[0] < before]
            self._syncs = [s for s in self._syncs if s not in due]
        for _, cameras, states in due:
            self.sinks.sync(cameras, states)

    def _deliver(self, event: StoredEvent) -> bool:
        ok = self.sinks.deliver(event.seq, event.payload)
        if not ok:
            self.failures += 1
        return ok

    def _set_failing(self, failing: bool) -> None:
        if failing == self._failing:
            return
        self._failing = failing
        if failing:
            log.warning("sink %s: delivery failing; retrying in order with backoff",
                        self.sinks.name)
        else:
            log.info("sink %s: delivering again", self.sinks.name)
