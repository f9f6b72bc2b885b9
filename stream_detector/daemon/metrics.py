"""The daemon's Prometheus metrics on an injected registry: what every stage reports, per camera and
per thread, and the values read at scrape time (capture rate, the store, heartbeat ages).

The daemon reports what happens through `Metrics` methods; nothing here reads global state.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator, Sequence
from typing import Any

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    PlatformCollector,
    ProcessCollector,
)
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric

from stream_detector.outputs import EventStore

EVENT_TYPES = ("start", "update", "end")
# Capture -> scored/published spans queueing plus one model call: milliseconds on a GPU, seconds on
# a busy CPU. The buckets cover both so p95 stays meaningful either way.
LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64)
INFERENCE_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)
PREFIX = "stream_detector_"


class Metrics:
    """Every stream-detector metric, registered on `registry` (tests pass a fresh one). Per-camera
    series are created at a camera's first mention (rates and ratios exist from the start, not from
    the first drop or event; `camera_removed` deletes them all). MQTT series exist only with
    `mqtt=True`: without a broker configured there is nothing to alert on."""

    def __init__(self, registry: CollectorRegistry, clock: Callable[[], float] = time.monotonic,
                 fps_weight: float = 0.1, mqtt: bool = True) -> None:
        self.registry = registry
        self._clock = clock
        self._fps_weight = fps_weight  # EWMA weight of the newest frame interval
        self._lock = threading.Lock()
        self._cameras: set[str] = set()
        self._last_frame: dict[str, float] = {}  # camera -> monotonic time of the previous frame
        self._interval: dict[str, float] = {}  # camera -> smoothed frame interval, seconds
        self._last_scored: dict[str, float] = {}  # camera -> monotonic time of the last score
        self._loaded_state: dict[str, bool] = {}
        self._up_state: dict[str, bool] = {}
        self._models: dict[str, set[str]] = {}  # camera -> its model names (active_model series)

        def counter(name: str, doc: str, labels: tuple[str, ...] = ("camera",)) -> Counter:
            return Counter(PREFIX + name, doc, labels, registry=registry)

        def gauge(name: str, doc: str, labels: tuple[str, ...] = ("camera",)) -> Gauge:
            return Gauge(PREFIX + name, doc, labels, registry=registry)

        def histogram(name: str, doc: str, labels: tuple[str, ...],
                      buckets: tuple[float, ...]) -> Histogram:
            return Histogram(PREFIX + name, doc, labels, registry=registry, buckets=buckets)

        self._frames_read = counter("frames_read", "Frames decoded from the camera.")
        self._frames_dropped = counter(
            "frames_dropped", "Frames read but discarded because the scoring queue was full.")
        self._frames_scored = counter("frames_scored", "Frames scored by the model.")
        self._frames_skipped = counter(
            "frames_skipped", "Frames decoded but not scored: the camera's scoring rate (fps_limit, "
            "else its model's fitted rate) is below its frame rate.")
        self._reconnects = counter("reconnects", "Attempts to reopen a lost or failed stream.")
        self._events = counter("events", "Anomaly events emitted, by type (start, update, end).",
                               ("camera", "type"))
        self._stream_up = gauge("stream_up", "1 while the camera delivers frames, else 0.")
        self._snapshot_stream_up = gauge(  # cameras with a detect_source only: not in _per_camera
            "snapshot_stream_up", "1 while the main stream that snapshots show delivers frames.")
        self._anomaly_score = gauge("anomaly_score", "Latest smoothed anomaly score.")
        self._anomaly_active = gauge("anomaly_active", "1 while an anomaly event is open, else 0.")
        self._queue_depth = gauge("queue_depth", "Frames waiting between capture and scoring.")
        self._model_loaded = gauge("model_loaded", "1 once the camera's model is loaded.")
        self._tampered = gauge(
            "camera_tampered", "1 while a camera_tampered event is open (picture covered, turned...).")
        self._active_model = gauge(
            "active_model", "1 for the camera's model that scores now, 0 for its other models.",
            ("camera", "model"))
        self._scoring_latency = histogram(
            "scoring_latency_seconds", "Seconds from frame capture to its score.", ("camera",),
            LATENCY_BUCKETS)
        self._event_latency = histogram(
            "event_latency_seconds", "Seconds from capture of the triggering frame to publication.",
            ("camera",), LATENCY_BUCKETS)
        self._inference = histogram(
            "inference_seconds", "Seconds per model call (one batch).", ("device",),
            INFERENCE_BUCKETS)
        self._batch = histogram(
            "inference_batch_frames", "Frames scored per model call, all cameras together.",
            ("device",), BATCH_BUCKETS)
        self._mqtt_connected = self._publish_failures = None
        if mqtt:
            self._mqtt_connected = gauge("mqtt_connected", "1 while connected to the broker.", ())
            self._publish_failures = counter("mqtt_publish_failures", "MQTT publishes that failed.",
                                             ())
        self._scoring_errors = counter("scoring_errors", "Scoring faults; each rebuilt the scorer.")
        self._snapshot_failures = counter("snapshot_failures", "Snapshots that could not be saved.")
        self._thread_errors = counter("thread_errors", "Faults caught in a daemon thread's loop.",
                                      ("thread",))
        self._recorder_up = gauge(  # cameras that keep clips only: not in _per_camera
            "recorder_up", "1 while the camera's recording for event clips writes segments.")
        self._clip_failures = counter(
            "clip_failures", "Event clips that could not be made (no recording, disk full, ...).")
        self._verdicts_rejected = counter(
            "verdicts_rejected", "Verdicts refused: unknown event, bad value or body.", ("source",))
        self._per_camera: tuple[Counter | Gauge | Histogram, ...] = (
            self._frames_read, self._frames_dropped, self._frames_scored, self._frames_skipped,
            self._reconnects, self._stream_up, self._anomaly_score, self._anomaly_active,
            self._queue_depth, self._model_loaded, self._scoring_latency, self._event_latency,
            self._scoring_errors, self._snapshot_failures, self._clip_failures, self._tampered)
        self._store: EventStore | None = None
        self._threads: Callable[[], dict[str, float]] | None = None
        self._http: Callable[[], dict[str, int]] | None = None
        registry.register(_Computed(self))
        ProcessCollector(registry=registry)
        PlatformCollector(registry=registry)

    # --- cameras -------------------------------------------------------------------------------

    def camera_added(self, camera: str) -> None:
        """Create the camera's series at zero (idempotent; every per-camera method calls it)."""
        with self._lock:
            if camera in self._cameras:
                return
            self._cameras.add(camera)
            self._up_state.setdefault(camera, False)
            self._loaded_state.setdefault(camera, False)
        for metric in self._per_camera:
            metric.labels(camera)
        for kind in EVENT_TYPES:
            self._events.labels(camera, kind)

    def camera_removed(self, camera: str) -> None:
        """Forget a camera (config reload): its series vanish instead of freezing at old values."""
        with self._lock:
            if camera not in self._cameras:
                return
            self._cameras.discard(camera)
            for state in (self._last_frame, self._interval, self._last_scored, self._loaded_state,
                          self._up_state):
                state.pop(camera, None)
            models = self._models.pop(camera, set())
        for metric in self._per_camera:
            metric.remove(camera)
        for model in models:
            self._active_model.remove(camera, model)
        for kind in EVENT_TYPES:
            self._events.remove(camera, kind)

    # --- capture -------------------------------------------------------------------------------

    def frame_read(self, camera: str) -> None:
        self.camera_added(camera)
        self._frames_read.labels(camera).inc()
        now = self._clock()
        with self._lock:
            last = self._last_frame.get(camera)
            self._last_frame[camera] = now
            if last is None:
                return
            step = now - last
            prev = self._interval.get(camera)
            interval = step if prev is None else prev + self._fps_weight * (step - prev)
            self._interval[camera] = interval

    def fps(self, camera: str) -> float:
        """Current capture rate: 0 until two frames have arrived since the stream came up, and 0
        again once no frame came for three intervals (at least a second): a frozen stream."""
        with self._lock:
            interval = self._interval.get(camera)
            last = self._last_frame.get(camera)
        if not interval or last is None or self._clock() - last > max(1.0, 3 * interval):
            return 0.0
        return 1.0 / interval

    def frame_dropped(self, camera: str, n: int = 1) -> None:
        self.camera_added(camera)
        self._frames_dropped.labels(camera).inc(n)

    def frames_skipped(self, camera: str, n: int) -> None:
        self.camera_added(camera)
        self._frames_skipped.labels(camera).inc(n)

    def snapshot_stream(self, camera: str, up: bool | None) -> None:
        """The main stream of a camera that scores its substream came up or went down (None: the
        camera stopped reading it: its series goes)."""
        _up_or_gone(self._snapshot_stream_up, camera, up)

    def stream_state(self, camera: str, up: bool) -> None:
        """A stream came up or went down; an outage must not count as one long frame interval."""
        self.camera_added(camera)
        self._stream_up.labels(camera).set(1 if up else 0)
        with self._lock:
            self._up_state[camera] = up
            if not up:
                self._last_frame.pop(camera, None)
                self._interval.pop(camera, None)

    def reconnecting(self, camera: str) -> None:
        self.camera_added(camera)
        self._reconnects.labels(camera).inc()

    def queue_depth(self, camera: str, n: int) -> None:
        self.camera_added(camera)
        self._queue_depth.labels(camera).set(n)

    # --- model and scoring ---------------------------------------------------------------------

    def model_state(self, camera: str, loaded: bool) -> None:
        self.camera_added(camera)
        self._model_loaded.labels(camera).set(1 if loaded else 0)
        with self._lock:
            self._loaded_state[camera] = loaded

    def active_model(self, camera: str, model: str, known: Sequence[str] = ()) -> None:
        """`model` scores the camera now; `known`: its other models, shown at 0 from the start."""
        self.camera_added(camera)
        with self._lock:
            self._models.setdefault(camera, set()).update(known, (model,))
            names_now = sorted(self._models[camera])
        for name in names_now:
            self._active_model.labels(camera, name).set(1 if name == model else 0)

    def tampered(self, camera: str, on: bool) -> None:
        self.camera_added(camera)
        self._tampered.labels(camera).set(1 if on else 0)

    def inference(self, device: str, seconds: float, frames: int = 1) -> None:
        self._inference.labels(device).observe(seconds)
        self._batch.labels(device).observe(frames)

    def scored(self, camera: str, score: float, latency_s: float) -> None:
        """One frame scored: `latency_s` is monotonic time from its capture to now."""
        self.camera_added(camera)
        self._frames_scored.labels(camera).inc()
        self._anomaly_score.labels(camera).set(score)
        self._scoring_latency.labels(camera).observe(latency_s)
        with self._lock:
            self._last_scored[camera] = self._clock()

    def event(self, camera: str, type: str, latency_s: float | None = None) -> None:
        """An event was published; `latency_s` is None when the capture time is unknown."""
        if type not in EVENT_TYPES:
            raise ValueError(f"event type must be one of {EVENT_TYPES}, got {type!r}")
        self.camera_added(camera)
        self._events.labels(camera, type).inc()
        self._anomaly_active.labels(camera).set(0 if type == "end" else 1)
        if latency_s is not None:
            self._event_latency.labels(camera).observe(latency_s)

    def event_published(self, camera: str, latency_s: float) -> None:
        """An event left the daemon (acknowledged by its sink) `latency_s` after its frame's capture."""
        self.camera_added(camera)
        self._event_latency.labels(camera).observe(latency_s)

    # --- MQTT ----------------------------------------------------------------------------------

    def mqtt_state(self, connected: bool) -> None:
        if self._mqtt_connected is not None:
            self._mqtt_connected.set(1 if connected else 0)

    def publish_failed(self) -> None:
        if self._publish_failures is not None:
            self._publish_failures.inc()

    # --- faults, the store and the threads -----------------------------------------------------

    def scoring_failed(self, camera: str) -> None:
        self.camera_added(camera)
        self._scoring_errors.labels(camera).inc()

    def snapshot_failed(self, camera: str) -> None:
        self.camera_added(camera)
        self._snapshot_failures.labels(camera).inc()

    def recorder_state(self, camera: str, up: bool | None) -> None:
        """A camera's clip recording writes (True) or fails (False); None: it stopped (no series)."""
        _up_or_gone(self._recorder_up, camera, up)

    def clip_failed(self, camera: str) -> None:
        self.camera_added(camera)
        self._clip_failures.labels(camera).inc()

    def verdict_rejected(self, source: str) -> None:
        self._verdicts_rejected.labels(source).inc()

    def thread_failed(self, thread: str) -> None:
        self._thread_errors.labels(thread).inc()

    def watch_store(self, store: EventStore) -> None:
        """Report the store's health and backlog at each scrape (they change on several threads)."""
        self._store = store

    def watch_http(self, stats: Callable[[], dict[str, int]]) -> None:
        """Read the HTTP server's open connections and client incidents at each scrape."""
        self._http = stats

    def watch_threads(self, ages: Callable[[], dict[str, float]]) -> None:
        """Report each supervised thread's heartbeat age at each scrape."""
        self._threads = ages

    def collect_computed(self) -> Iterator[Metric]:
        """Values read at scrape time rather than pushed: fps (decays when frames stop), store state
        and heartbeat ages."""
        fps = GaugeMetricFamily(PREFIX + "capture_fps",
                                "Frames read per second (EWMA); 0 once frames stop.", labels=["camera"])
        with self._lock:
            cameras = sorted(self._cameras)
        for cam in cameras:
            fps.add_metric([cam], self.fps(cam))
        yield fps
        if self._store is not None:
            st = self._store
            yield GaugeMetricFamily(PREFIX + "store_writable",
                                    "1 while the event store accepts writes, else 0.",
                                    value=1 if st.healthy else 0)
            yield GaugeMetricFamily(PREFIX + "store_held_events",
                                    "Events held in memory because the store refused them.",
                                    value=st.backlog_size)
            yield GaugeMetricFamily(PREFIX + "outbox_backlog",
                                    "Events stored but not yet delivered to the sinks.",
                                    value=st.pending)
            yield CounterMetricFamily(PREFIX + "store_write_failures",
                                      "Writes the event store refused (locked, full, I/O error).",
                                      value=st.write_failures)
        if self._threads is not None:
            ages = GaugeMetricFamily(PREFIX + "thread_heartbeat_age_seconds",
                                     "Seconds since the thread last beat its heartbeat.",
                                     labels=["thread"])
            for name, age in sorted(self._threads().items()):
                ages.add_metric([name], age)
            yield ages
        if self._http is not None:
            stats = dict(self._http())
            yield GaugeMetricFamily(PREFIX + "http_connections",
                                    "Client connections the HTTP server holds open.",
                                    value=stats.pop("connections", 0))
            incidents = CounterMetricFamily(
                PREFIX + "http_client_incidents",
                "Client connections ended by the server or the client: aborted, timed_out, "
                "bad_request, evicted (connection limit), idle_closed (keep-alive expiry).",
                labels=["kind"])
            for kind, n in sorted(stats.items()):
                incidents.add_metric([kind], n)
            yield incidents

    # --- readiness -----------------------------------------------------------------------------

    def readiness(self, ready_after: float) -> tuple[bool, dict[str, Any]]:
        """Ready when every camera has a model and scored a frame in the last `ready_after` seconds.

        Shaped for `health_routes(readiness=...)`; the detail says which camera holds readiness back.
        """
        now = self._clock()
        with self._lock:
            cameras = sorted(self._cameras)
            detail = {}
            for cam in cameras:
                last = self._last_scored.get(cam)
                age = None if last is None else round(now - last, 3)
                detail[cam] = {
                    "stream_up": self._up_state.get(cam, False),
                    "model_loaded": self._loaded_state.get(cam, False),
                    "seconds_since_scored": age,
                    "ready": (self._loaded_state.get(cam, False) and age is not None
                              and age <= ready_after),
                }
        ok = bool(cameras) and all(d["ready"] for d in detail.values())
        return ok, {"cameras": detail}


def _up_or_gone(gauge: Gauge, camera: str, up: bool | None) -> None:
    """A per-camera 0/1 gauge that only some cameras have: None removes the camera's series."""
    if up is None:
        try:
            gauge.remove(camera)
        except KeyError:
            pass
        return
    gauge.labels(camera).set(1 if up else 0)


class _Computed:
    """A registry collector for `Metrics.collect_computed`."""

    def __init__(self, metrics: Metrics) -> None:
        self.metrics = metrics

    def collect(self) -> Iterator[Metric]:
        return self.metrics.collect_computed()

