"""The long-running daemon: owns the threads, the stop event, the sinks, metrics and reloads.

Threads: one capture loop per camera, one inference worker serving every camera on the device,
the publisher (store -> MQTT or stdout), paho's network thread and the health server.
"""

from __future__ import annotations

import logging
import threading
import time
from pathlib import Path
from typing import Any, TextIO

import cv2
from prometheus_client import CollectorRegistry

from stream_detector.buffer import DropPolicy, FrameQueue
from stream_detector.camera import CaptureLoop
from stream_detector.config import CameraConfig, DaemonConfig
from stream_detector.errors import ConfigError, SourceError
from stream_detector.events import EventPolicy, EventTracker
from stream_detector.messages import Event, Frame
from stream_detector.metrics import HealthServer, Metrics
from stream_detector.model.runtime import DEFAULT_MODEL, LoadedModel
from stream_detector.pipeline import (
    FrameScorer,
    CameraState,
    check_camera,
    check_device,
    ignore_mask,
    load_camera_model,
    open_source_for,
)
from stream_detector.report import snapshot
from stream_detector.sinks import Publisher, Sink
from stream_detector.sinks.mqtt import MqttSink
from stream_detector.sinks.stdout import StdoutSink
from stream_detector.store import EventStore, event_payload
from stream_detector.validate import check_camera_model

log = logging.getLogger("stream_detector.daemon")
IDLE_WAIT = 0.005  # seconds the worker sleeps when no camera has a frame waiting


class Daemon:
    def __init__(self, cfg: DaemonConfig, stdout: TextIO, registry: CollectorRegistry | None = None) -> None:
        self.cfg = cfg
        self._models: dict[tuple[str, str], LoadedModel] = {}
        check_device(cfg.device, cfg.path)
        for name, cam in cfg.cameras.items():  # fail fast on bad cameras and models, before any I/O
            check_camera(name, cam, cfg.path)
            check_camera_model(name, cam, self._model_for(name, cam, cfg.path), cfg.path)
        self.registry = registry or CollectorRegistry()
        self.metrics = Metrics(self.registry)
        self.stdout_sink = StdoutSink(stdout)
        self.stop_event = threading.Event()
        self._lock = threading.RLock()  # cameras dict and per-camera scoring/emitting
        self._cameras: dict[str, CameraState] = {}
        self._latency: dict[int, tuple[str, float]] = {}  # seq -> (camera, capture mono time)
        self._lost: set[str] = set()  # cameras whose stream broke; handled by the worker
        self.store = EventStore.from_config(cfg.storage)
        self.mqtt: MqttSink | None = None
        if cfg.mqtt is not None:
            self.mqtt = MqttSink(cfg.mqtt, list(cfg.cameras), on_state=self._mqtt_state)
        self.publisher = Publisher(self.store, _Timed(self.mqtt or self.stdout_sink, self))
        self.health = HealthServer(cfg.metrics.host, cfg.metrics.port, self.registry,
                                   lambda: self.metrics.readiness(cfg.metrics.ready_after))
        self._worker = threading.Thread(target=self._work, name="inference", daemon=True)

    # --- lifecycle ---------------------------------------------------------------------------

    def start(self) -> None:
        self.store.prune(time.time() - self.cfg.storage.keep_days * 86400)
        try:  # before the broker: a port taken since the config was checked stops us unconnected
            self.health.start()
        except OSError as exc:
            raise ConfigError(f"{self.cfg.path}: metrics.port: cannot listen on "
                              f"{self.cfg.metrics.host}:{self.cfg.metrics.port} ({exc.strerror})") from None
        if self.mqtt:
            self.mqtt.start()
        self.publisher.start()
        for name, cam in self.cfg.cameras.items():
            self._start_camera(name, cam)
        self._worker.start()
        log.info("running %d camera(s); metrics on http://%s:%d/metrics", len(self._cameras),
                 self.cfg.metrics.host, self.health.port)

    def stop(self, timeout: float = 5.0) -> None:
        """Close open events, flush them to the sinks, say offline, stop every thread."""
        self.stop_event.set()
        with self._lock:
            for name in list(self._cameras):
                self._stop_camera(name)
        self._worker.join(timeout=2.0)
        self.publisher.stop(timeout)
        if self.mqtt:
            self.mqtt.stop()
        self.store.close()
        self.health.stop()

    def reload(self, new: DaemonConfig) -> None:
        """Apply a re-read config: cameras added, removed or changed; others keep running."""
        models: dict[tuple[str, str], LoadedModel] = {}  # re-read: a model may have been re-fitted
        for name, cam in new.cameras.items():
            check_camera(name, cam, new.path)
            key = (cam.model or str(DEFAULT_MODEL), self.cfg.device)
            if key not in models:
                models[key] = load_camera_model(name, cam, self.cfg.device, new.path)
            check_camera_model(name, cam, models[key], new.path)
        if (new.mqtt, new.metrics, new.storage, new.device) != (
                self.cfg.mqtt, self.cfg.metrics, self.cfg.storage, self.cfg.device):
            log.warning("reload: mqtt, metrics, storage and device changes apply after a restart")
        with self._lock:
            old = self.cfg.cameras
            self._models = models
            for name in old:
                if (name not in new.cameras or new.cameras[name] != old[name]
                        or _checksum(self._cameras[name].model) != _checksum(self._model_for(
                            name, new.cameras[name], new.path))):
                    self._stop_camera(name)
            for name, cam in new.cameras.items():
                if name not in self._cameras:
                    self._start_camera(name, cam)
            self.cfg = DaemonConfig(cameras=new.cameras, mqtt=self.cfg.mqtt, metrics=self.cfg.metrics,
                                    storage=self.cfg.storage, logging=new.logging,
                                    device=self.cfg.device, path=new.path)
        log.info("reload: %d camera(s) running", len(self._cameras))

    @property
    def metrics_port(self) -> int:
        return self.health.port

    # --- cameras -----------------------------------------------------------------------------

    def _model_for(self, name: str, cam: CameraConfig, where: str) -> LoadedModel:
        key = (cam.model or str(DEFAULT_MODEL), self.cfg.device)
        if key not in self._models:
            self._models[key] = load_camera_model(name, cam, self.cfg.device, where)
        return self._models[key]

    def _start_camera(self, name: str, cfg: CameraConfig) -> None:
        model = self._model_for(name, cfg, self.cfg.path)
        threshold = model.threshold(cfg.false_alarms_per_hour)
        policy = EventPolicy(threshold, cfg.low_threshold_ratio * threshold, cfg.min_duration,
                             cfg.cooldown, cfg.update_interval)
        cam = CameraState(name, cfg, model, threshold, FrameQueue(cfg.queue_size, DropPolicy.DROP_OLDEST),
                      EventTracker(name, policy))
        cam.capture = CaptureLoop(name, lambda: open_source_for(cfg), cam.queue, cam.stop,
                                  _Observer(self), stale_after=cfg.stale_after,
                                  fps_limit=cfg.fps_limit)
        self.metrics.camera_added(name)
        self.metrics.model_state(name, True)
        self._cameras[name] = cam
        cam.capture.start()

    def _stop_camera(self, name: str) -> None:
        cam = self._cameras.pop(name)
        cam.stop.set()
        if cam.capture is not None:
            cam.capture.join(timeout=3.0)
        for ev in cam.tracker.close(time.time(), cam.stream_time):
            self._emit(cam, ev, time.monotonic())
        self.metrics.camera_removed(name)

    def _stream_lost(self, cam: CameraState) -> None:
        """The stream broke: its past is gone (reset windows) and an open event ends now."""
        if cam.scorer is not None:
            cam.scorer.reset()
        for ev in cam.tracker.close(time.time(), cam.stream_time):
            self._emit(cam, ev, time.monotonic())

    # --- inference worker --------------------------------------------------------------------

    def _work(self) -> None:
        while not self.stop_event.is_set():
            busy = False
            with self._lock:
                for cam in list(self._cameras.values()):
                    # The loss is read before draining: frames queued before it are scored first.
                    lost = cam.name in self._lost
                    self._lost.discard(cam.name)
                    self.metrics.queue_depth(cam.name, len(cam.queue))
                    frames = cam.queue.get_all()
                    if frames:
                        busy = True
                        self._score(cam, frames)
                    if lost:
                        self._stream_lost(cam)
            if not busy:
                self.stop_event.wait(IDLE_WAIT)

    def _score(self, cam: CameraState, frames: list[Frame]) -> None:
        h, w = frames[-1].image.shape[:2]
        if cam.size != (w, h):
            self._resize(cam, w, h)
        if cam.unfit or cam.scorer is None:
            return
        frames = [f for f in frames if f.image.shape[:2] == (h, w)]
        started = time.perf_counter()
        scores = cam.scorer.score(frames)
        self.metrics.inference(cam.model.device.type, time.perf_counter() - started)
        now = time.monotonic()
        for f, s in zip(frames, scores):
            cam.stream_time = s.stream_time
            self.metrics.scored(cam.name, s.score, now - f.mono_time)
            if self.mqtt:
                self.mqtt.score(cam.name, s.score)
            events = cam.tracker.observe(s)
            if cam.tracker.active is not None and (cam.peak is None or s.score >= cam.peak[0]):
                cam.peak = (s.score, f.image, s.cells, s.box)
            for ev in events:
                self._emit(cam, ev, f.mono_time)

    def _resize(self, cam: CameraState, w: int, h: int) -> None:
        """First frame or a resolution change: check the aspect, rebuild the scorer and masks."""
        cam.size = (w, h)
        try:
            cam.model.check_source(w, h, f"camera {cam.name}")
        except SourceError as exc:
            log.error("%s; its frames are not scored", exc)
            cam.unfit, cam.scorer = True, None
            self.metrics.model_state(cam.name, False)
            return
        cam.unfit = False
        self.metrics.model_state(cam.name, True)
        cam.scorer = FrameScorer(cam.model, cam.threshold, ignore_mask(cam.model, cam.cfg.ignore, w, h))

    # --- events ------------------------------------------------------------------------------

    def _emit(self, cam: CameraState, ev: Event, captured: float) -> None:
        """Store first (so nothing is lost), then hand to the sinks."""
        before = cam.before.get(ev.id)
        snap = self._snapshot(cam, ev) if ev.type in ("start", "end") else None
        payload = event_payload(ev, before, snap or (before or {}).get("snapshot"))
        if ev.type == "end":
            cam.before.pop(ev.id, None)
            cam.peak = None
        else:
            cam.before[ev.id] = payload["after"]
        seq = self.store.append(ev, payload)
        self._latency[seq] = (cam.name, captured)
        self.metrics.event(cam.name, ev.type)
        if self.mqtt:
            self.stdout_sink.deliver_event(seq, payload)
            if ev.type != "update":  # a state topic: ON at start, OFF at end, not again per update
                self.mqtt.anomaly_state(cam.name, ev.type == "start")
        self.publisher.wake()

    def _snapshot(self, cam: CameraState, ev: Event) -> str | None:
        if not (self.cfg.storage.snapshots and cam.cfg.snapshot and cam.peak is not None):
            return None
        score, image, cells, box = cam.peak
        h, w = image.shape[:2]
        heat = cam.model.slicer.heatmap(cells, w, h)
        img = snapshot(image, heat, cam.threshold, box, f"{cam.name} score {score:.2f}")
        ok, jpeg = cv2.imencode(".jpg", img, [cv2.IMWRITE_JPEG_QUALITY, 85])
        if not ok:
            return None
        path = Path(self.cfg.storage.path) / "snapshots" / f"{ev.id}-{ev.type}.jpg"
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(jpeg.tobytes())
        except OSError as exc:  # disk full: the event still goes out, without its picture
            log.warning("camera %s: snapshot not saved (%s)", cam.name, exc.strerror)
            path = None  # type: ignore[assignment]
        if self.mqtt:
            self.mqtt.snapshot(cam.name, jpeg.tobytes())
        return str(path) if path else None

    def _mqtt_state(self, connected: bool) -> None:
        self.metrics.mqtt_state(connected)
        if connected:
            self.publisher.wake()

    def delivered(self, seq: int, ok: bool) -> None:
        entry = self._latency.pop(seq, None) if ok else None
        if entry is not None:
            self.metrics.event_published(entry[0], time.monotonic() - entry[1])
        if not ok:
            self.metrics.publish_failed()


def _checksum(model: LoadedModel) -> str:
    return str(model.metadata["files"]["model.pt"]["sha256"])


class _Timed:
    """The publisher's sink, reporting each delivery back for latency and failure metrics."""

    def __init__(self, inner: Sink, daemon: Daemon) -> None:
        self.inner = inner
        self.daemon = daemon
        self.name = inner.name

    def deliver_event(self, seq: int, payload: dict[str, Any]) -> bool:
        ok = self.inner.deliver_event(seq, payload)
        self.daemon.delivered(seq, ok)
        return ok

    def anomaly_state(self, camera: str, on: bool) -> None:
        self.inner.anomaly_state(camera, on)

    def score(self, camera: str, value: float) -> None:
        self.inner.score(camera, value)

    def snapshot(self, camera: str, jpeg: bytes) -> None:
        self.inner.snapshot(camera, jpeg)

    def start(self) -> None:
        self.inner.start()

    def stop(self) -> None:
        self.inner.stop()


class _Observer:
    """What a capture loop reports, turned into metrics and stream-loss handling."""

    def __init__(self, daemon: Daemon) -> None:
        self.daemon = daemon
        self.metrics = daemon.metrics

    def frame_read(self, camera: str) -> None:
        self.metrics.frame_read(camera)

    def frame_dropped(self, camera: str) -> None:
        self.metrics.frame_dropped(camera)

    def stream_state(self, camera: str, up: bool) -> None:
        self.metrics.stream_state(camera, up)
        if not up:
            self.daemon._lost.add(camera)  # no lock here: the worker may be busy with this camera

    def reconnecting(self, camera: str) -> None:
        self.metrics.reconnecting(camera)

    def resolution_changed(self, camera: str, width: int, height: int) -> None:
        pass  # the worker sees the new size on the next frame and rebuilds the scorer
