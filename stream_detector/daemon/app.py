"""The long-running daemon: starts, supervises and stops the threads; applies reloads.

Threads, one job each: a capture loop per camera (frames and stream-state messages into its queue),
the inference worker (scores every camera, no I/O), the writer ("emitter": payloads, snapshots,
the event store, retention), the publisher (store -> sinks, in order), paho's network thread, the
HTTP server and, with [tune] enabled, the tuner. Each but the tuner beats a heartbeat; /healthz and
systemd's watchdog see the critical ones.
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import replace
from functools import partial
from pathlib import Path
from typing import TextIO

from prometheus_client import CollectorRegistry

from stream_detector.capture import (
    SEGMENT_SECONDS,
    CaptureLoop,
    DropPolicy,
    FrameQueue,
    FrameReceiver,
    FrameRecorder,
    FrameTee,
    MainStream,
    Recorder,
    SegmentRing,
    StreamRecorder,
    clip_dir,
    is_stream_state,
    main_stream_config,
    never_dropped,
    recording_kind,
    ring_dir,
    scored_config,
    source_for,
)
from stream_detector.config import CameraConfig, DaemonConfig
from stream_detector.daemon.cameras import CameraRuntime, CaptureMetrics, camera_states, checksum
from stream_detector.daemon.checks import camera_models, check_cameras, load_camera_model
from stream_detector.daemon.health import Heartbeats
from stream_detector.daemon.metrics import Metrics
from stream_detector.daemon.endpoints import health_routes
from stream_detector.daemon.tuning import Tuner, tuned_config, with_model
from stream_detector.detect import (
    FramePreparer,
    FrameScorer,
    InferenceWorker,
    Item,
    SceneWatch,
    ScorerFactory,
    initial_model,
    lane_for,
    scoring_rate,
)
from stream_detector.errors import ConfigError
from stream_detector.model import LoadedModel, configure_torch
from stream_detector.outputs import (
    Clipper,
    EventStore,
    MqttSink,
    Publisher,
    Retention,
    Reviews,
    Sink,
    Sinks,
    StdoutSink,
    Writer,
    event_payload,
    renderer_by_model,
    renderer_for,
    review_routes,
)
from stream_detector.web import HttpServer, Router

log = logging.getLogger(__name__)
CRITICAL = ("inference", "emitter", "publisher")
STALL_AFTER = 15.0  # seconds without a heartbeat before a critical thread counts as stalled


class Daemon:
    """`scorer` and `store` are injectable so tests can make scoring or the writer fail."""

    def __init__(self, cfg: DaemonConfig, stdout: TextIO, registry: CollectorRegistry | None = None,
                 *, scorer: ScorerFactory = FrameScorer, store: EventStore | None = None,
                 stall_after: float = STALL_AFTER) -> None:
        self.cfg = cfg = tuned_config(cfg)  # cameras whose models were tuned score those versions
        self._lock = threading.Lock()  # a reload and the tuner's switch change cameras in turn
        # Fail fast on bad cameras and models, before any I/O.
        self._models = check_cameras(cfg, cfg.device, cfg.inference.precision)
        self._scorer = scorer
        self.stall_after = stall_after
        self.registry = registry or CollectorRegistry()
        self.metrics = Metrics(self.registry, mqtt=cfg.mqtt is not None)
        self.heartbeats = Heartbeats()
        self.metrics.watch_threads(self.heartbeats.ages)
        self.stop_event = threading.Event()
        self.store = store or EventStore.from_config(cfg.storage)
        self.metrics.watch_store(self.store)
        self._latency: dict[int, tuple[str, float]] = {}  # seq -> (camera, capture mono time)
        stdout_sink = StdoutSink(stdout)
        self.mqtt: MqttSink | None = None
        sinks: list[Sink] = [stdout_sink]
        self.reviews = Reviews(self.store, lambda: self.publisher.wake(),
                               self.metrics.verdict_rejected)
        if cfg.mqtt is not None:
            self.mqtt = MqttSink(cfg.mqtt, list(cfg.cameras), node=cfg.node,
                                 on_state=self._mqtt_state, on_verdict=self.reviews.from_mqtt,
                                 public_url=self._public_url)
            sinks.append(self.mqtt)
        self.sinks = Sinks(sinks, self.mqtt or stdout_sink, self._delivered)
        self.publisher = Publisher(self.store, self.sinks,
                                   beat=self.heartbeats.beater("publisher"))
        storage = cfg.storage
        self.clips = Clipper(clip_dir(storage.path), self.metrics.clip_failed,
                             beat=self.heartbeats.beater("clips"))
        self._recorders: dict[str, Recorder] = {}
        self._rings: dict[str, SegmentRing] = {}  # kept across a camera's restart: pending clips
        self.writer = Writer(self.store, partial(event_payload, host=cfg.node), self.metrics,
                             self._stored,
                             self.sinks.score,
                             Path(storage.path) / "snapshots" if storage.snapshots else None,
                             Retention(storage.keep_days, storage.keep_mb),
                             beat=self.heartbeats.beater("emitter"), clips=self.clips)
        self._cond = threading.Condition()  # shared by every frame queue: the worker sleeps on it
        self.worker = InferenceWorker(self._cond, self.writer.put, self.metrics, self.stop_event,
                                      beat=self.heartbeats.beater("inference"),
                                      linger=cfg.inference.linger_ms / 1000)
        self._captures: dict[str, CameraRuntime] = {}
        self._main: dict[str, MainStream] = {}  # cameras scoring a detect_source: snapshots' stream
        # One HTTP server for every endpoint: other modules' routes join `self.routes` before start.
        self.routes: Router = health_routes(
            self.registry, lambda: self.metrics.readiness(cfg.metrics.ready_after), self.liveness)
        if cfg.api.enabled:  # the review API and page, on the same server
            self.routes.include(review_routes(
                self.reviews, lambda: camera_states(list(self.cfg.cameras), self.metrics,
                                                    self.writer, self.store),
                Path(storage.path), cfg.api.token))
        self.http = HttpServer(cfg.metrics.host, cfg.metrics.port, self.routes)
        self.metrics.watch_http(self.http.stats)
        self.tuner = Tuner(cfg.tune, storage.path, self.store, lambda: self.cfg.cameras,
                           self._switch_model, self.registry) if cfg.tune.enabled else None

    # --- lifecycle ---------------------------------------------------------------------------

    def start(self) -> None:
        """Close what a crash left open, then start the threads; cameras last."""
        last_seq = self._recover()
        threads = configure_torch(self.cfg.inference)  # the daemon owns its process: one setting
        log.info("inference: %d torch thread(s), %s", threads,
                 ", ".join(sorted({f"{m.device.type} {m.precision}" for m in self._models.values()})))
        try:  # before the broker: a port taken since the config was checked stops us unconnected
            self.http.start()
        except OSError as exc:
            raise ConfigError(f"{self.cfg.path}: metrics.port: cannot listen on "
                              f"{self.cfg.metrics.host}:{self.cfg.metrics.port} ({exc.strerror})") from None
        log.info("metrics: serving http://%s:%d/metrics", self.cfg.metrics.host, self.http.port)
        if self.mqtt:
            self.mqtt.start()
        self.publisher.sync_states(last_seq, list(self.cfg.cameras),
                                   {name: False for name in self.cfg.cameras})
        self.publisher.start()
        self.clips.clean()
        self.clips.start()
        self.writer.start()
        self.worker.start()
        for name, cam in self.cfg.cameras.items():
            self._start_camera(name, cam)
        if self.tuner:
            self.tuner.start()
        log.info("running %d camera(s); metrics on http://%s:%d/metrics", len(self._captures),
                 self.cfg.metrics.host, self.http.port)

    def stop(self, timeout: float = 5.0) -> None:
        """Close open events, write and flush them to the sinks, say offline, stop every thread."""
        self.stop_event.set()
        if self.tuner:  # a tune in progress is stopped: its partial directory is removed
            self.tuner.halt()
            self.tuner.join(timeout=5.0)
        captures = [camera.capture for camera in self._captures.values()]
        captures += [main.loop for main in self._main.values()]
        for name in list(self._captures):
            self._stop_camera(name, join=False)
        deadline = time.monotonic() + 3.0
        for capture in captures:  # a hung read may keep one a little longer: it is not waited for
            capture.join(timeout=max(0.0, deadline - time.monotonic()))
        for recorder in self._recorders.values():  # each lists its last segment as it stops
            recorder.stop_event.set()
        for recorder in self._recorders.values():
            recorder.join(timeout=4.0)
        self.worker.wake()
        self.worker.join(timeout=5.0)  # ends each open event ("stopped") on its way out
        self.writer.finish(timeout)  # held ends get their clips from what was recorded
        self.clips.close()
        self.publisher.stop(timeout)
        if self.mqtt:
            self.mqtt.stop()
        self.store.close()  # what the disk still refuses is logged in full, never dropped unseen
        self.http.stop()

    def reload(self, new: DaemonConfig) -> None:
        """Apply a re-read config: cameras added, removed or changed; others keep running."""
        with self._lock:
            self._reload(new)

    def _reload(self, new: DaemonConfig) -> None:
        fixed = ("mqtt", "metrics", "api", "storage", "device", "inference", "node_id", "tune")
        if any(getattr(new, key) != getattr(self.cfg, key) for key in fixed):
            log.warning("reload: changes of %s apply after a restart", ", ".join(fixed))
        new = tuned_config(replace(new, tune=self.cfg.tune))
        models = check_cameras(new, self.cfg.device, self.cfg.inference.precision)  # re-read
        old = self.cfg.cameras
        self._models = models
        for name in old:
            if (name not in new.cameras or new.cameras[name] != old[name]
                    or checksum(self._captures[name].models)
                    != checksum(self._models_for(new.cameras[name]).values())):
                self._stop_camera(name)
        added = [name for name in new.cameras if name not in self._captures]
        self.publisher.sync_states(self.store.last_seq, list(new.cameras),
                                   {name: False for name in added})
        for name in added:
            self._start_camera(name, new.cameras[name])
        # Only cameras and logging change without a restart; the rest stays as the daemon runs it.
        self.cfg = replace(self.cfg, cameras=new.cameras, logging=new.logging, path=new.path)
        log.info("reload: %d camera(s) running", len(self._captures))

    def _switch_model(self, camera: str, name: str, directory: str) -> None:
        """The tuner's new version (or the configured model again) scores camera's model `name`
        from its next frame, without restarting the camera; a later reload keeps it."""
        with self._lock:
            cam = self.cfg.cameras.get(camera)
            if cam is None:
                return  # removed by a reload meanwhile
            key = (directory, self.cfg.device)
            model = self._models.get(key) or load_camera_model(
                f"cameras.{camera}.model", directory, *key[1:], "tune", self.cfg.inference.precision)
            self._models[key] = model
            cam = with_model(cam, name, directory)
            self.cfg = replace(self.cfg, cameras={**self.cfg.cameras, camera: cam})
            runtime = self._captures.get(camera)
            if runtime is not None:
                self._captures[camera] = runtime._replace(
                    models=tuple(self._models_for(cam).values()))
                self.worker.swap(camera, name, model)

    def liveness(self) -> tuple[bool, dict[str, object]]:
        """Healthy while every critical thread is alive and beat within `stall_after` seconds."""
        ok, detail = self.heartbeats.check(CRITICAL, self.stall_after)
        dead = [t.name for t in (self.worker, self.writer) if t.ident and not t.is_alive()]
        return ok and not dead, {**detail, "dead": dead}

    def _public_url(self) -> str:
        """How others reach the API (clip URLs in MQTT): api.public_url, else host and port."""
        if self.cfg.api.public_url:
            return self.cfg.api.public_url.rstrip("/")
        host = self.cfg.metrics.host
        return f"http://{'[' + host + ']' if ':' in host else host}:{self.http.port}"

    @property
    def metrics_port(self) -> int:
        return self.http.port

    # --- cameras -----------------------------------------------------------------------------

    def _recover(self) -> int:
        """Events a killed run left open end now ("restart"); retention runs once before start."""
        closed = self.writer.recover()
        if closed:
            log.warning("closed %d event(s) left open by the previous run", len(closed))
        return self.store.last_seq

    def _models_for(self, cam: CameraConfig) -> dict[str, LoadedModel]:
        """The camera's models by name, as check_cameras loaded them (at start-up or last reload)."""
        return camera_models(cam, self._models, self.cfg.device)

    def _start_camera(self, name: str, cfg: CameraConfig) -> None:
        models = self._models_for(cfg)
        model = next(iter(models.values()))  # all prepare frames alike (check_cameras)
        queue: FrameQueue[Item] = FrameQueue(cfg.queue_size, DropPolicy.DROP_OLDEST, self._cond,
                                             keep=never_dropped)
        active = initial_model(cfg, time.time())
        lane = lane_for(name, cfg, models, queue, self._scorer, active)
        # The capture thread hands its frames to the scene watch (models' rules, tamper), if any.
        receiver = SceneWatch.for_camera(name, cfg, queue, active) or queue
        main = self._start_main_stream(name, cfg) if cfg.snapshot else None
        frames = main.frames if main else None
        self.writer.camera(name, renderer_by_model({
            n: renderer_for(name, m, m.threshold(cfg.false_alarms_per_hour), frames)
            for n, m in models.items()}) if cfg.snapshot else None)
        self.metrics.camera_added(name)
        self.metrics.model_state(name, True)
        self.metrics.active_model(name, active, list(models))
        self.worker.add(lane)
        stop = threading.Event()
        receiver = self._start_recorder(name, cfg, receiver, scoring_rate(cfg, model))

        def make_capture() -> CaptureLoop:
            return CaptureLoop(name, lambda: source_for(scored_config(cfg)), receiver, stop,
                               CaptureMetrics(self.metrics), stale_after=cfg.stale_after,
                               fps_limit=scoring_rate(cfg, model),
                               beat=self.heartbeats.beater(f"capture-{name}"),
                               prepare=lambda: FramePreparer.for_model(model))

        capture = make_capture()
        self._captures[name] = CameraRuntime(capture, stop, tuple(models.values()), make_capture)
        capture.start()

    def _start_main_stream(self, name: str, cfg: CameraConfig) -> MainStream | None:
        """A camera that scores its detect_source reads `source` for snapshots on its own thread."""
        main_cfg = main_stream_config(cfg)
        if main_cfg is None:
            return None
        main = MainStream(name, lambda: source_for(main_cfg), self.metrics.snapshot_stream,
                          stale_after=cfg.stale_after, beat=self.heartbeats.beater(f"capture-{name}/main"))
        self._main[name] = main
        main.start()
        return main

    def _start_recorder(self, name: str, cfg: CameraConfig, receiver: FrameReceiver,
                        fps: float) -> FrameReceiver:
        """The camera's recording for clips; returns where its capture loop hands frames: to
        `receiver` (the scene watch or the frame queue), through the recorder too when its frames
        are what is recorded."""
        kind = recording_kind(cfg.source) if cfg.clip else ""
        if cfg.clip and not kind:
            log.warning("camera %s: no clips: they need ffmpeg, which is not installed", name)
        if not kind:
            self.clips.camera(name, None)
            return receiver
        keep = cfg.pre_capture + cfg.min_duration + 2 * SEGMENT_SECONDS + 10.0
        ring = self._rings.get(name)
        if ring is None:
            ring = self._rings[name] = SegmentRing(ring_dir(self.cfg.storage.path, name), keep)
            ring.clear()  # an earlier run's segments: their index died with it
        ring.keep = keep
        self.clips.camera(name, ring, cfg.pre_capture, cfg.post_capture)
        recorder: Recorder
        if kind == "copy":
            recorder = StreamRecorder(name, cfg.source, ring, self.metrics.recorder_state)
        else:
            recorder = FrameRecorder(name, ring, self.metrics.recorder_state, fps or 10.0)
        self._recorders[name] = recorder
        recorder.start()
        return FrameTee(receiver, recorder) if isinstance(recorder, FrameRecorder) else receiver

    def supervise(self) -> None:
        """Restart a capture thread that died of a bug: it ends on its own only by design."""
        for name, main in list(self._main.items()):
            if main.supervise():
                self.metrics.thread_failed(f"capture-{name}/main")
        for name, camera in list(self._captures.items()):
            capture = camera.capture
            if not capture.is_alive() and not capture.finished and not camera.stop.is_set():
                log.error("camera %s: capture thread died; restarting it", name)
                self.metrics.thread_failed(f"capture-{name}")
                capture = camera.make()
                self._captures[name] = camera._replace(capture=capture)
                capture.start()

    def _stop_camera(self, name: str, join: bool = True) -> None:
        """No lock is held here: the worker and the other cameras go on while this one stops."""
        camera = self._captures.pop(name)
        camera.stop.set()
        if join:
            camera.capture.join(timeout=3.0)
        if (main := self._main.pop(name, None)) is not None:
            main.stop(join)
            self.heartbeats.forget(f"capture-{name}/main")
        if (recorder := self._recorders.pop(name, None)) is not None:
            recorder.stop_event.set()  # its segments stay for the clip of an event it ends
            if join:
                recorder.join(timeout=4.0)
            self.metrics.recorder_state(name, None)
        self.worker.remove(name)
        self.heartbeats.forget(f"capture-{name}")
        self.metrics.camera_removed(name)

    # --- events ------------------------------------------------------------------------------

    def _stored(self, seq: int, camera: str, captured: float) -> None:
        self._latency[seq] = (camera, captured)
        self.publisher.wake()

    def _delivered(self, seq: int, ok: bool) -> None:
        entry = self._latency.pop(seq, None) if ok else None
        if entry is not None:
            self.metrics.event_published(entry[0], time.monotonic() - entry[1])
        if not ok:
            self.metrics.publish_failed()

    def _mqtt_state(self, connected: bool) -> None:
        self.metrics.mqtt_state(connected)
        if connected:
            self.publisher.wake()
