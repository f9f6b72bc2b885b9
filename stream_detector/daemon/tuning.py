"""The daemon tuning its cameras' models on a schedule ([tune]): false alarms' clips learned by
`stream-detector tune` in a low-priority child; the new version scores from the camera's next frame
and across restarts (a pointer under the storage path); the configured model is never changed.

Under storage.path: models/<camera>/<model name>/current.json (the pointer) and one directory per
tuned version (the newest `keep` are kept). Rollback: `cameras.NAME.tune = false` and a SIGHUP.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, replace
from pathlib import Path

from prometheus_client import CollectorRegistry, Counter, Gauge

from stream_detector.config import CameraConfig, DaemonConfig, ModelChoice, TuneConfig, parse_time
from stream_detector.errors import ModelError
from stream_detector.outputs import EventStore

log = logging.getLogger(__name__)
TUNED_DIR = "models"  # under storage.path
POINTER = "current.json"
PARTIAL = ".partial-"  # a version being written; what a killed run leaves is removed
PID_FILE = "tuning.pid"  # the tune child's, so that a restart stops one a killed daemon left
CHILD_TIMEOUT = 3600.0  # seconds a tune may take before it is stopped (and tried again next time)


@dataclass(frozen=True)
class Pointer:
    """Which tuned version a camera's model scores with, and what it was tuned from and with."""

    model: str  # the tuned directory in use
    base: str  # the configured directory it descends from
    base_signature: str  # that directory's signature when tuned: a re-fitted base drops the pointer
    events: tuple[str, ...]  # the false alarms it learned, by event id
    tuned: float  # when (epoch seconds)


def tuned_root(storage: str, camera: str, model: str) -> Path:
    return Path(storage) / TUNED_DIR / camera / model


def read_pointer(root: Path) -> Pointer | None:
    """The pointer under `root`, or None (none written, or unreadable: logged, then ignored)."""
    path = root / POINTER
    if not path.is_file():
        return None
    try:
        doc = json.loads(path.read_text())
        return Pointer(str(doc["model"]), str(doc["base"]), str(doc["base_signature"]),
                       tuple(str(e) for e in doc["events"]), float(doc["tuned"]))
    except (OSError, ValueError, KeyError, TypeError) as exc:
        log.warning("%s: unreadable (%s): the configured model is used", path, exc)
        return None


def write_pointer(root: Path, pointer: Pointer) -> None:
    """Atomically: a crash leaves the old pointer or the new one, never half of one."""
    root.mkdir(parents=True, exist_ok=True)
    tmp = root / (POINTER + ".tmp")
    tmp.write_text(json.dumps({**asdict(pointer), "events": list(pointer.events)}, indent=2) + "\n")
    os.replace(tmp, root / POINTER)


def signature_of(model_dir: str) -> str | None:
    """A model directory's seal as its metadata says (None: unreadable); load() checks it fully."""
    from stream_detector.model import read_metadata  # imports torch: only when tuning

    try:
        return str(read_metadata(Path(model_dir))["signature"])
    except (ModelError, KeyError):
        return None


def usable(root: Path, base: str) -> Pointer | None:
    """The pointer, if it names a tuned directory of `base` as `base` is now."""
    pointer = read_pointer(root)
    if pointer is None:
        return None
    if pointer.base != base or pointer.base_signature != signature_of(base):
        log.warning("%s: tuned from %s as it was; the configured model has changed since: it is "
                    "used, and tuned afresh with the false alarms", root / POINTER, pointer.base)
        return None
    from stream_detector.model import read_metadata, verify  # imports torch: only when tuning

    try:
        verify(Path(pointer.model), read_metadata(Path(pointer.model)))
    except ModelError as exc:
        log.warning("%s: the tuned model does not verify (%s): the configured model is used",
                    root / POINTER, exc)
        return None
    return pointer


def with_model(cam: CameraConfig, name: str, directory: str) -> CameraConfig:
    """`cam` with its model `name` read from `directory`."""
    if not cam.models:
        return replace(cam, model=directory)
    return replace(cam, models=tuple(replace(c, model=directory) if c.name == name else c
                                     for c in cam.models))


def tuned_config(cfg: DaemonConfig) -> DaemonConfig:
    """`cfg` with each tuned camera model read from its tuned directory (when [tune] is enabled and
    the camera takes part); run, reload and check-config see the same models."""
    if not cfg.tune.enabled:
        return cfg
    cameras = dict(cfg.cameras)
    for name, cam in cfg.cameras.items():
        if not cam.tune:
            continue
        for choice in cam.model_choices:
            pointer = usable(tuned_root(cfg.storage.path, name, choice.name), choice.model)
            if pointer is not None:
                cameras[name] = with_model(cameras[name], choice.name, pointer.model)
    return replace(cfg, cameras=cameras)


def next_run(tune: TuneConfig, after: float) -> float:
    """When the next look for verdicts is due after `after` (epoch seconds): `interval` seconds
    later, or at the next `at` (local time)."""
    if tune.interval > 0:
        return after + tune.interval
    start = dt.datetime.fromtimestamp(after)
    at = dt.datetime.combine(start.date(), parse_time(tune.at))
    if at <= start:
        at = dt.datetime.combine(start.date() + dt.timedelta(days=1), parse_time(tune.at))
    return at.timestamp()


@dataclass(frozen=True)
class Plan:
    """What one camera model needs: tune `source` with `events` (base: start again from it)."""

    camera: str
    name: str
    base: str
    source: str
    events: tuple[str, ...]  # clips to learn now
    learned: tuple[str, ...]  # what the result will have learned in all
    why: str


def plan(camera: str, choice: ModelChoice, current: str, storage: str, store: EventStore,
         min_new: int) -> Plan | None:
    """What tuning a camera's model needs now, or None. New false alarms are learned on top of the
    current version; a verdict taken back (no longer false_alarm) starts again from the
    configured model with the false alarms still standing (none left: back to it)."""
    pointer = read_pointer(tuned_root(storage, camera, choice.name))
    if pointer is not None and pointer.model != current:
        pointer = None  # not the version in use (disabled, or a changed base): start from this one
    base = pointer.base if pointer else current
    learned = pointer.events if pointer else ()
    marked = [e for e in reversed(store.events(camera=camera, verdict="false_alarm", limit=10**6))
              if (e.get("model") or choice.name) == choice.name]
    with_clip = tuple(str(e["id"]) for e in marked if e["has_clip"] and Path(e["clip"]).is_file())
    taken_back = [e["id"] for e in store.events(camera=camera, ids=learned, limit=len(learned))
                  if e["verdict"] != "false_alarm"] if learned else []
    if taken_back:
        return Plan(camera, choice.name, base, base, with_clip, with_clip,
                    f"{len(taken_back)} verdict(s) taken back: from the configured model again")
    new = tuple(e for e in with_clip if e not in learned)
    if len(new) < min_new:
        return None
    return Plan(camera, choice.name, base, current, new, learned + new,
                f"{len(new)} new false alarm(s)")


class Tuner(threading.Thread):
    """Looks for new verdicts when due, tunes in a child process, hands the result to `switch`
    (camera, model name, directory: the daemon scores with it from the next frame)."""

    def __init__(self, tune: TuneConfig, storage: str, store: EventStore,
                 cameras: Callable[[], Mapping[str, CameraConfig]],
                 switch: Callable[[str, str, str], None], registry: CollectorRegistry,
                 clock: Callable[[], float] = time.time) -> None:
        super().__init__(name="tuner", daemon=True)
        self.tune, self.storage, self.store = tune, storage, store
        self.cameras, self.switch, self.clock = cameras, switch, clock
        self.stop = threading.Event()
        self._child: subprocess.Popen[bytes] | None = None
        self._runs = Counter("stream_detector_tunes", "Scheduled tunes of a camera's model, by "
                             "result (ok, failed, reverted: back to the configured model).",
                             ("camera", "result"), registry=registry)
        self._learned = Gauge("stream_detector_model_false_alarms_learned", "False alarms the "
                              "camera's model in use has learned as normal (0: the configured one).",
                              ("camera", "model"), registry=registry)

    def run(self) -> None:
        self._clean()
        for camera, cam in self.cameras().items():
            for choice in cam.model_choices if cam.tune else ():
                self._report(camera, choice)
        due = next_run(self.tune, self.clock())
        log.info("tuning: next look for false alarms at %s",
                 dt.datetime.fromtimestamp(due).isoformat(timespec="seconds"))
        while not self.stop.wait(max(0.0, min(60.0, due - self.clock()))):
            if self.clock() < due:
                continue
            self.run_once()
            due = next_run(self.tune, self.clock())

    def run_once(self) -> None:
        """Every taking-part camera model, once: tuned if it needs it."""
        for camera, cam in list(self.cameras().items()):
            if not cam.tune:
                continue
            for choice in cam.model_choices:
                if self.stop.is_set():
                    return
                root = tuned_root(self.storage, camera, choice.name)
                try:
                    todo = plan(camera, choice, choice.model, self.storage, self.store,
                                self.tune.min_false_alarms)
                    if todo is not None:
                        self._apply(todo, root)
                except Exception as exc:  # a bug or a disk fault: this model waits for next time
                    self._runs.labels(camera, "failed").inc()
                    log.error("camera %s: model %s: tuning failed: %s: %s", camera, choice.name,
                              type(exc).__name__, exc)

    def _report(self, camera: str, choice: ModelChoice) -> None:
        pointer = read_pointer(tuned_root(self.storage, camera, choice.name))
        learned = len(pointer.events) if pointer and pointer.model == choice.model else 0
        self._learned.labels(camera, choice.name).set(learned)

    def _apply(self, todo: Plan, root: Path) -> None:
        camera, name = todo.camera, todo.name
        if not todo.events:  # every learned verdict was taken back: the configured model again
            self.switch(camera, name, todo.base)
            (root / POINTER).unlink(missing_ok=True)
            self._runs.labels(camera, "reverted").inc()
            self._learned.labels(camera, name).set(0)
            log.info("camera %s: model %s: %s; back to %s", camera, name, todo.why, todo.base)
            return
        stamp = dt.datetime.now().strftime("%Y%m%dT%H%M%S")
        n = 1
        while (root / stamp).exists():  # two tunes in one second
            stamp, n = f"{stamp.split('-')[0]}-{n}", n + 1
        out, partial = root / stamp, root / (PARTIAL + stamp)
        root.mkdir(parents=True, exist_ok=True)
        log.info("camera %s: model %s: tuning with %s (%s)", camera, name,
                 ", ".join(todo.events), todo.why)
        started = time.monotonic()
        why = self._tune_child(todo, partial)
        if why is None and not self.stop.is_set():
            os.replace(partial, out)
            self.switch(camera, name, str(out))  # loads it: a directory that does not load stops here
            write_pointer(root, Pointer(str(out), todo.base, signature_of(todo.base) or "",
                                        todo.learned, self.clock()))
            self._runs.labels(camera, "ok").inc()
            self._learned.labels(camera, name).set(len(todo.learned))
            log.info("camera %s: model %s: tuned in %.0f s; scoring with %s (%d false alarm(s) "
                     "learned)", camera, name, time.monotonic() - started, out, len(todo.learned))
            self._prune(root, out)
            return
        shutil.rmtree(partial, ignore_errors=True)
        if self.stop.is_set():
            log.info("camera %s: model %s: tuning stopped with the daemon", camera, name)
        else:
            self._runs.labels(camera, "failed").inc()
            log.warning("camera %s: model %s: tuning failed (%s); it keeps its model and is tried "
                        "again next time", camera, name, why)

    def _tune_child(self, todo: Plan, out: Path) -> str | None:
        """`stream-detector tune` in the idle scheduling class (it runs on CPU time the cameras
        leave: under `nice` it still took half a core from a busy daemon), one thread for torch
        and OpenCV; None, or why it failed."""
        cmd = ["chrt", "--idle", "0", sys.executable, "-m", "stream_detector", "tune",
               "--model", todo.source, "--store", self.storage, "--out", str(out),
               "--camera", todo.camera, "--device", "cpu", "--false-alarms-per-hour",
               repr(self.cameras()[todo.camera].false_alarms_per_hour)]
        for event in todo.events:
            cmd += ["--event", event]
        env = {**os.environ, "OMP_NUM_THREADS": "1", "OPENCV_FOR_THREADS_NUM": "1"}
        self._child = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                       stderr=subprocess.PIPE, env=env, start_new_session=True)
        pid_file = Path(self.storage) / TUNED_DIR / PID_FILE
        pid_file.write_text(f"{self._child.pid}\n")
        try:
            _, err = self._child.communicate(timeout=CHILD_TIMEOUT)
        except subprocess.TimeoutExpired:
            self._child.kill()
            self._child.communicate()
            return f"still running after {CHILD_TIMEOUT:.0f} s"
        finally:
            code, self._child = self._child.returncode, None
            pid_file.unlink(missing_ok=True)
        if code == 0:
            return None
        lines = [line for line in err.decode(errors="replace").splitlines() if line.strip()]
        return lines[-1].strip() if lines else f"exit status {code}"

    def halt(self) -> None:
        """Stop a tune in progress (the daemon is stopping): its partial directory is removed."""
        self.stop.set()
        child = self._child
        if child is not None and child.poll() is None:
            child.terminate()

    def _clean(self) -> None:
        """What a killed daemon left: its tune child, still running on its own, and partial versions."""
        pid_file = Path(self.storage) / TUNED_DIR / PID_FILE
        try:
            pid = int(pid_file.read_text())
            if b"stream_detector\0tune\0" in Path(f"/proc/{pid}/cmdline").read_bytes():
                log.info("stopping the tune the previous run left running (pid %d)", pid)
                os.killpg(pid, signal.SIGKILL)  # its own session: the group is the child alone
                for _ in range(50):  # gone, or a zombie nobody reaps (it holds nothing)
                    if not _running(pid):
                        break
                    time.sleep(0.1)
        except (OSError, ValueError):
            pass  # no pid file, or the process is gone
        pid_file.unlink(missing_ok=True)
        for partial in (Path(self.storage) / TUNED_DIR).glob(f"*/*/{PARTIAL}*"):
            log.info("removing %s: a tune the previous run did not finish", partial)
            shutil.rmtree(partial, ignore_errors=True)

    def _prune(self, root: Path, keep_too: Path) -> None:
        """The newest `keep` versions stay (and the one in use)."""
        versions = sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
        for old in versions[:-self.tune.keep]:
            if old != keep_too:
                shutil.rmtree(old, ignore_errors=True)


def _running(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return False


def tuned_models(cfg: DaemonConfig) -> list[str]:
    """check-config's lines for `tuned_config(cfg)`: which cameras score a tuned version, learned
    from how many false alarms."""
    out = []
    for name, cam in cfg.cameras.items():
        for choice in cam.model_choices if cfg.tune.enabled and cam.tune else ():
            pointer = read_pointer(tuned_root(cfg.storage.path, name, choice.name))
            if pointer is not None and pointer.model == choice.model:
                when = dt.datetime.fromtimestamp(pointer.tuned).isoformat(timespec="seconds")
                out.append(f"camera {name}: model {choice.name}: tuned {when} with "
                           f"{len(pointer.events)} false alarm(s): {pointer.model}")
    return out
