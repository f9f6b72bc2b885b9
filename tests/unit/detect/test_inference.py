"""The inference worker: stream losses in order with the frames, a timeline that survives
reconnects and reloads, a scoring fault that rebuilds one camera's scorer, cameras of one model
in one call; scene changes in order with the frames: a model switch (and a tuned version swapped
in) carries the open event over, a tampered camera raises one camera_tampered event and no anomaly
event until it clears.
"""

from __future__ import annotations

import dataclasses
import threading
import time
from collections.abc import Callable, Iterator

import numpy as np
import pytest
from conftest import ScriptedScorer
from prometheus_client import CollectorRegistry

from stream_detector.capture import FrameQueue, is_stream_state, never_dropped
from stream_detector.daemon import Metrics
from stream_detector.detect import TAMPERED, EventPolicy, EventTracker, InferenceWorker, Item, Lane
from stream_detector.messages import (
    Event,
    EventOut,
    Frame,
    FrameScore,
    SceneChange,
    ScoreOut,
    StreamState,
)

HIGH, LOW = 5.0, 0.0


POLICY = EventPolicy(1.0, 0.5, min_duration=0.2, cooldown=1.0, update_interval=100.0)


def frame(t: float, score: float, index: int = 0, mono: float | None = None) -> Frame:
    """A frame whose scripted score is written into its first pixel."""
    image = np.zeros((48, 64, 3), np.uint8)
    image[0, 0, 0] = int(score * 10)
    return Frame("door", index, t, 1000.0 + t, time.monotonic() if mono is None else mono, image)


class Worker:
    """A running InferenceWorker with one lane; what it emits is recorded in order."""

    def __init__(self, scorers: list[ScriptedScorer], models: TwoModels | None = None) -> None:
        self.registry = CollectorRegistry()
        self.metrics = Metrics(self.registry)
        self.cond = threading.Condition()
        self.queue: FrameQueue[Item] = FrameQueue(1000, cond=self.cond, keep=never_dropped)
        self.out: list[EventOut | ScoreOut] = []
        self.scorers = scorers
        self.built = 0
        self.stop = threading.Event()
        self.worker = InferenceWorker(self.cond, self.out.append, self.metrics, self.stop)
        self.worker.add(Lane("door", self.queue, EventTracker("door", POLICY), self._make,
                             models=models))
        self.worker.start()

    def _make(self, w: int, h: int) -> ScriptedScorer:
        self.built += 1
        return self.scorers[min(self.built, len(self.scorers)) - 1]

    def put(self, *items: Item) -> None:
        for item in items:
            self.queue.put(item)

    def events(self) -> list[Event]:
        return [o.event for o in list(self.out) if isinstance(o, EventOut)]

    def wait(self, ok: Callable[[], bool], timeout: float = 5.0) -> None:
        deadline = time.monotonic() + timeout
        while not ok():
            assert time.monotonic() < deadline, f"timed out; emitted {self.events()}"
            time.sleep(0.01)

    def close(self) -> None:
        self.stop.set()
        self.worker.wake()
        self.worker.join(5)
        assert not self.worker.is_alive()


class TwoModels:
    """A camera's models as the worker sees them: "day" scores first; "night" has its own policy,
    whose low threshold (2.0) is above day's threshold (1.0)."""

    def __init__(self) -> None:
        self.active = "day"
        self.policies = {"day": POLICY, "night": dataclasses.replace(POLICY, threshold=3.0,
                                                                     low_threshold=2.0)}

    def activate(self, name: str) -> EventPolicy:
        self.active = name
        return self.policies[name]

    def policy(self) -> EventPolicy:
        return self.policies[self.active]

    def replace(self, name: str, model: EventPolicy) -> bool:
        """A tuned version of `name`: here, just its policy."""
        self.policies[name] = model
        return name == self.active


@pytest.fixture()
def worker() -> Iterator[Callable[..., Worker]]:
    made: list[Worker] = []

    def make(*scorers: ScriptedScorer, models: TwoModels | None = None) -> Worker:
        made.append(Worker(list(scorers) or [ScriptedScorer()], models))
        return made[-1]
    yield make
    for w in made:
        w.close()


def test_a_loss_is_handled_in_order_with_the_frames(worker: Callable[..., Worker]) -> None:
    """Frames queued before a loss are scored before it; the loss resets windows and ends the event."""
    scorer = ScriptedScorer()
    w = worker(scorer)
    lost = StreamState("door", False, "source returned no frame", 2000.0, time.monotonic())
    w.put(*[frame(i / 10, HIGH, i) for i in range(11)], lost,
          *[frame(i / 10, LOW, i) for i in range(5)])
    w.wait(lambda: len(w.events()) == 2 and scorer.scored == 16)
    start, end = w.events()
    assert (start.type, end.type) == ("start", "end")
    assert end.reason == "stream lost: source returned no frame" and end.end_wall == 2000.0
    assert end.end_stream == pytest.approx(1.0)  # the last frame before the loss was scored first
    assert scorer.resets == 1


def test_stream_time_restarting_at_zero_does_not_stall_the_cooldown(worker: Callable[..., Worker]) -> None:
    """A reconnect restarts stream time at 0 while an event cools down: it must still end."""
    w = worker()
    m = time.monotonic()
    w.put(*[frame(i / 10, HIGH, i, m + i / 10) for i in range(21)])  # 0.0-2.0 s: the event starts
    w.put(*[frame(2.0 + i / 10, LOW, 21 + i, m + 2.0 + i / 10) for i in range(1, 5)])  # cooling
    w.put(*[frame(i / 10, LOW, i, m + 3.0 + i / 10) for i in range(12)])  # reconnected at t = 0
    w.wait(lambda: len(w.events()) == 2)
    end = w.events()[1]
    assert end.type == "end" and end.reason == "cooldown"
    assert end.end_stream > 2.4  # on the camera's timeline, which never goes back


def test_a_camera_restarted_by_a_reload_continues_its_timeline(
        worker: Callable[..., Worker]) -> None:
    """Removed and added again (its config changed): stream time restarts at 0 as after a
    reconnect, and the camera's timeline goes on from where it was, by the time that passed."""
    w = worker()
    m = time.monotonic()
    w.put(*[frame(i / 10, HIGH, i, m + i / 10) for i in range(21)])  # 0.0-2.0 s: an event starts
    w.wait(lambda: len(w.events()) == 1)
    w.worker.remove("door")
    w.wait(lambda: len(w.events()) == 2)  # "camera removed" ends it, at 2.0 s
    queue: FrameQueue[Item] = FrameQueue(1000, cond=w.cond, keep=is_stream_state)
    w.worker.add(Lane("door", queue, EventTracker("door", POLICY), w._make))
    for i in range(21):  # restarted 1.5 s later, its stream time from 0 again
        queue.put(frame(i / 10, HIGH, i, m + 3.5 + i / 10))
    w.wait(lambda: len(w.events()) == 3)
    removed, again = w.events()[1:]
    assert removed.reason == "camera removed" and removed.end_stream == pytest.approx(2.0)
    assert again.type == "start" and again.start_stream >= 3.5  # 2.0 + 1.5 s, not from 0


def test_a_scoring_fault_rebuilds_that_scorer_and_the_worker_goes_on(
        worker: Callable[..., Worker], caplog: pytest.LogCaptureFixture) -> None:
    good = ScriptedScorer()
    w = worker(ScriptedScorer(fail=True), good)
    w.put(*[frame(i / 10, LOW, i) for i in range(5)])
    w.wait(lambda: (w.registry.get_sample_value("stream_detector_scoring_errors_total",
                                                {"camera": "door"}) or 0) == 1)
    w.put(*[frame(1 + i / 10, LOW, 5 + i) for i in range(5)])
    w.wait(lambda: good.scored == 5)
    assert w.built == 2 and w.worker.is_alive()
    assert any("camera door: scoring failed; rebuilding its scorer" in r.getMessage()
               for r in caplog.records)


class JointScorer(ScriptedScorer):
    """A ScriptedScorer that shares model calls with the others of its `batch_key`."""

    batch_key = "one model"
    calls: list[list[int]] = []  # frames per camera in each joint call, shared by the class

    def score_many(self, scorers: list[JointScorer], frames: list[list[Frame]]) -> list[list[FrameScore]]:
        if any(s.fail for s in scorers):
            raise RuntimeError("injected scoring fault in a joint call")
        JointScorer.calls.append([len(f) for f in frames])
        return [s.score(f) for s, f in zip(scorers, frames)]


def test_cameras_of_one_model_share_calls_and_a_faulty_one_is_isolated(
        caplog: pytest.LogCaptureFixture) -> None:
    JointScorer.calls = []
    cond, out, stop = threading.Condition(), [], threading.Event()
    metrics = Metrics(CollectorRegistry())
    worker = InferenceWorker(cond, out.append, metrics, stop, chunk=4, linger=0.5)
    good = {name: JointScorer() for name in ("a", "b", "c")}
    bad = JointScorer(fail=True)
    queues = {}
    for name in ("a", "b", "c"):
        queues[name] = FrameQueue(100, cond=cond, keep=is_stream_state)
        scorers = iter([bad, good[name]] if name == "c" else [good[name]])
        worker.add(Lane(name, queues[name], EventTracker(name, POLICY), lambda w, h, s=scorers: next(s)))
    for i in range(3):  # three frames per camera, queued before the worker starts
        for name in ("a", "b", "c"):
            queues[name].put(dataclasses.replace(frame(i / 10, LOW, i), camera=name))
    worker.start()
    try:
        deadline = time.monotonic() + 5
        while good["a"].scored < 3 or good["b"].scored < 3:
            assert time.monotonic() < deadline
            time.sleep(0.01)
        assert metrics_value(metrics, "scoring_errors_total", {"camera": "c"}) == 1
        assert good["c"].scored == 0 and bad.scored == 0  # c's frames went with its scorer
        with cond:  # all at once (the condition is reentrant), so the worker sees them together
            for i in range(3, 5):  # c's rebuilt scorer now joins the others' calls
                for name in ("a", "b", "c"):
                    queues[name].put(dataclasses.replace(frame(i / 10, LOW, i), camera=name))
        while good["c"].scored < 2:
            assert time.monotonic() < deadline
            time.sleep(0.01)
        # chunk 4 over 3 cameras: a frame each per call; once c failed, a and b went on together
        assert [1, 1] in JointScorer.calls and JointScorer.calls[-1] == [1, 1, 1]
    finally:
        stop.set()
        worker.wake()
        worker.join(5)
    assert any("a joint model call failed" in r.getMessage() for r in caplog.records)


def metrics_value(metrics: Metrics, name: str, labels: dict[str, str]) -> float:
    return metrics.registry.get_sample_value(f"stream_detector_{name}", labels) or 0.0


def change(**kw: object) -> SceneChange:
    return SceneChange("door", 3000.0, time.monotonic(), **kw)  # type: ignore[arg-type]


def test_a_model_switch_carries_the_open_event_over_to_the_new_model(
        worker: Callable[..., Worker]) -> None:
    """One event across the switch: started under "day", ended under "night", same id; the new
    model's scorer is built at the next frame and its policy judges from then on."""
    models = TwoModels()
    first, second = ScriptedScorer(), ScriptedScorer()
    w = worker(first, second, models=models)
    w.put(*[frame(i / 10, HIGH, i) for i in range(5)], change(model="night", why="picture grey"),
          *[frame(0.5 + i / 10, 1.5, 5 + i) for i in range(15)])  # day would keep it open
    w.wait(lambda: len(w.events()) == 2 and second.scored == 15)
    start, end = w.events()
    assert (start.type, start.model, end.type, end.model) == ("start", "day", "end", "night")
    assert start.id == end.id and end.reason == "cooldown"  # 1.5 < night's low threshold, 1 s
    assert first.scored == 5 and w.built == 2
    assert metrics_value(w.metrics, "active_model", {"camera": "door", "model": "night"}) == 1


def test_a_tuned_version_scores_from_the_next_frame_and_the_open_event_carries_over(
        worker: Callable[..., Worker]) -> None:
    """The tuner's swap: the active model's scorer is rebuilt at the next frame, its policy judges
    from then on, the event open at the swap is the same event; a swap of a model not scoring now
    rebuilds nothing."""
    models = TwoModels()
    first, second = ScriptedScorer(), ScriptedScorer()
    w = worker(first, second, models=models)
    w.put(*[frame(i / 10, HIGH, i) for i in range(5)])
    w.wait(lambda: len(w.events()) == 1)
    w.worker.swap("door", "night", POLICY)  # not the one scoring: nothing rebuilt
    w.worker.swap("door", "day", dataclasses.replace(POLICY, threshold=3.0, low_threshold=2.0))
    w.worker.swap("yard", "day", POLICY)  # no such camera: ignored
    w.put(*[frame(0.5 + i / 10, 1.5, 5 + i) for i in range(15)])  # the old policy would keep it open
    w.wait(lambda: len(w.events()) == 2 and second.scored == 15)
    start, end = w.events()
    assert start.id == end.id and (end.type, end.reason, end.model) == ("end", "cooldown", "day")
    assert first.scored == 5 and w.built == 2


def test_a_tampered_camera_raises_one_event_and_no_anomaly_until_it_clears(
        worker: Callable[..., Worker]) -> None:
    scorer = ScriptedScorer()
    w = worker(scorer, models=TwoModels())
    w.put(*[frame(i / 10, HIGH, i) for i in range(5)],  # an anomaly is open when it happens
          change(tampered=True, difference=0.8, why="the scene changed"),
          *[frame(0.5 + i / 10, HIGH, 5 + i) for i in range(30)])  # 3 s over the threshold
    w.wait(lambda: scorer.scored == 35)
    anomaly_start, anomaly_end, tamper = w.events()
    assert anomaly_end.id == anomaly_start.id and anomaly_end.reason == "camera tampered"
    assert (tamper.kind, tamper.type, tamper.detail, tamper.score) == (
        TAMPERED, "start", "the scene changed", 0.8)
    assert metrics_value(w.metrics, "camera_tampered", {"camera": "door"}) == 1
    assert [o.peak for o in w.out if isinstance(o, EventOut) and o.event.kind == TAMPERED] == [None]

    w.put(change(tampered=False, why="the picture matches the scene again"),
          *[frame(3.5 + i / 10, HIGH, 35 + i) for i in range(5)])
    w.wait(lambda: len(w.events()) == 5)
    cleared, again = w.events()[3:]
    assert (cleared.id, cleared.type, cleared.reason) == (
        tamper.id, "end", "the picture matches the scene again")
    assert cleared.end_stream == pytest.approx(3.4)  # the last frame before the clear
    assert again.kind == "anomaly" and again.type == "start" and again.id != anomaly_start.id
    assert scorer.resets == 1  # windows do not span the tampered pictures
    assert metrics_value(w.metrics, "camera_tampered", {"camera": "door"}) == 0


def test_a_tamper_event_outlives_a_stream_loss_and_ends_when_the_worker_stops(
        worker: Callable[..., Worker]) -> None:
    w = worker()
    lost = StreamState("door", False, "no frame for 10.0s", 2000.0, time.monotonic())
    w.put(frame(0.0, LOW), change(tampered=True, why="the picture is blank"), lost, frame(0.0, LOW))
    w.wait(lambda: len(w.events()) == 1)
    w.close()
    tamper, end = w.events()
    assert (end.id, end.type, end.reason) == (tamper.id, "end", "stopped")
