"""The publisher: stored events sent in order through the sinks, the same event retried, states
after their event (a camera_tampered event's its own state), and stdout kept live while the
primary sink fails.
"""

from __future__ import annotations

import dataclasses
import io
import json
import threading
import time
from pathlib import Path
from typing import Any

from conftest import append, make_event

from stream_detector.outputs import EventStore, Publisher, Sinks, StdoutSink, event_payload


def test_publisher_delivers_in_order_and_retries_same_event(tmp_path: Path) -> None:
    """A sink that fails twice: the Publisher backs off and resends the same event, not the next."""

    class Flaky:
        name = "flaky"
        takes_snapshots = False

        def __init__(self) -> None:
            self.calls: list[int] = []
            self.fail_left = 2
            self.done = threading.Event()

        def deliver_event(self, seq: int, payload: dict[str, object]) -> bool:
            self.calls.append(seq)
            if seq == 2 and self.fail_left:
                self.fail_left -= 1
                return False
            if seq == 3:
                self.done.set()
            return True

        def anomaly_state(self, camera: str, on: bool) -> None:
            self.calls.append(-1 if on else -2)  # after its event, before the next one

    store = EventStore(tmp_path / "events.sqlite")
    sink = Flaky()
    seqs = [append(store, n) for n in range(3)]
    pub = Publisher(store, Sinks([sink], sink), min_backoff=0.01,  # type: ignore[list-item]
                    max_backoff=0.05)
    pub.start()
    pub.wake()
    assert sink.done.wait(5)
    assert pub.stop(2)
    assert sink.calls == [1, -1, 2, 2, 2, -1, 3, -1] and seqs == [1, 2, 3]
    assert store.unpublished() == [] and pub.failures == 2 and pub.delivered == 3
    store.close()


def drain(pub: Publisher, store: EventStore) -> None:
    """Run the publisher until the store has nothing unpublished, then stop it."""
    pub.start()
    pub.wake()
    deadline = time.monotonic() + 5
    while store.unpublished() and time.monotonic() < deadline:
        time.sleep(0.01)
    assert pub.stop(2)


def test_dispatcher_sends_state_after_its_event_and_keeps_stdout_live_while_the_primary_fails(
        tmp_path: Path) -> None:
    """One path, per sink in store order: event, then anomaly state; a failing primary is retried on
    the same event while stdout beside it gets each event exactly once."""
    log: list[str] = []

    class Primary:
        name = "primary"
        takes_snapshots = False
        fail_left = 2

        def deliver_event(self, seq: int, payload: dict[str, Any]) -> bool:
            if seq == 2 and self.fail_left:
                self.fail_left -= 1
                log.append(f"primary fails {seq}")
                return False
            log.append(f"primary {seq}")
            return True

        def anomaly_state(self, camera: str, on: bool) -> None:
            log.append(f"primary {'ON' if on else 'OFF'}")

    out = io.StringIO()
    store = EventStore(tmp_path / "events.sqlite")
    append(store, 1)
    append(store, 1, kind="end")
    append(store, 3)
    primary = Primary()
    drain(Publisher(store, Sinks([StdoutSink(out), primary], primary),  # type: ignore[list-item]
                    min_backoff=0.01, max_backoff=0.05), store)
    assert log == ["primary 1", "primary ON", "primary fails 2", "primary fails 2", "primary 2",
                   "primary OFF", "primary 3", "primary ON"]
    assert [json.loads(line)["type"] for line in out.getvalue().splitlines()] == ["new", "end", "new"]
    store.close()


def test_a_tamper_event_sets_the_tampered_state_not_the_anomaly_state(tmp_path: Path) -> None:
    """camera_tampered events have their own state (<prefix>/<camera>/tampered), after the event."""
    log: list[str] = []

    class Recorder:
        name = "recorder"
        takes_snapshots = False

        def deliver_event(self, seq: int, payload: dict[str, Any]) -> bool:
            log.append(f"{payload['type']} {payload['after']['kind']}")
            return True

        def anomaly_state(self, camera: str, on: bool) -> None:
            log.append(f"anomaly {'ON' if on else 'OFF'}")

        def tamper_state(self, camera: str, on: bool) -> None:
            log.append(f"tampered {'ON' if on else 'OFF'}")

    store = EventStore(tmp_path / "events.sqlite")
    for n, kind, type_ in [(1, "anomaly", "start"), (1, "anomaly", "end"),
                           (2, "camera_tampered", "start"), (2, "camera_tampered", "end")]:
        ev = dataclasses.replace(make_event(n, kind=type_), kind=kind)
        store.append(ev, event_payload(ev, None, host="h"))
    sink = Recorder()
    drain(Publisher(store, Sinks([sink], sink)), store)  # type: ignore[list-item]
    assert log == ["new anomaly", "anomaly ON", "end anomaly", "anomaly OFF",
                   "new camera_tampered", "tampered ON", "end camera_tampered", "tampered OFF"]
    store.close()
