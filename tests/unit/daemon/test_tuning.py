"""The daemon tuning its models on a schedule: when it looks, which model directory a camera scores
with (the pointer, and when it is ignored), what each run needs (new false alarms, a verdict taken
back), and the whole loop in a running daemon: a false alarm's clip tuned in a child process, the
camera switched without restarting it, kept across a restart, and undone when the verdict is."""

from __future__ import annotations

import datetime as dt
import json
import shutil
import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

from conftest import injected_clip, stored_false_alarm
from prometheus_client import CollectorRegistry

from stream_detector.config import DEFAULT_MODEL, TuneConfig, parse_daemon_config
from stream_detector.daemon import Daemon, Tuner, tuned_config, tuned_models
from stream_detector.daemon.tuning import (
    POINTER,
    Pointer,
    next_run,
    plan,
    signature_of,
    tuned_root,
    write_pointer,
)
from stream_detector.outputs import EventStore, Reviews


def config(tmp: Path, source: str = "demo", **tune: Any) -> Any:
    return parse_daemon_config({
        "cameras": {"door": {"source": source, "loop": True, "realtime": True}},
        "metrics": {"port": 0}, "storage": {"path": str(tmp / "store"), "snapshots": False},
        "tune": {"enabled": True, **tune}}, "test.toml")


def test_it_looks_daily_at_its_hour_or_every_interval() -> None:
    noon = dt.datetime(2026, 12, 1, 12, 0).timestamp()
    tomorrow_3 = dt.datetime(2026, 12, 2, 3, 0).timestamp()
    assert TuneConfig().at == "03:00"
    assert next_run(TuneConfig(), noon) == tomorrow_3
    assert next_run(TuneConfig(at="12:30"), noon) == noon + 1800
    assert next_run(TuneConfig(at="12:00"), noon) == noon + 86400  # not again the same minute
    assert next_run(TuneConfig(interval=600), noon) == noon + 600


def tuned_copy(tmp: Path, base: Path = DEFAULT_MODEL) -> Path:
    """A sealed directory standing in for tune's output, with a pointer naming it."""
    root = tuned_root(str(tmp / "store"), "door", "default")
    out = root / "20261201T030000"
    shutil.copytree(base, out)
    write_pointer(root, Pointer(str(out), str(base), str(signature_of(str(base))), ("fa1",),
                                time.time()))
    return out


def test_a_camera_scores_its_tuned_version_only_while_it_matches_the_configured_model(
        tmp_path: Path) -> None:
    out = tuned_copy(tmp_path)
    cfg = config(tmp_path)
    assert tuned_config(cfg).cameras["door"].model == str(out)
    assert tuned_models(tuned_config(cfg)) == [f"camera door: model default: tuned "
                                 f"{dt.datetime.fromtimestamp(json.loads((out.parent / POINTER).read_text())['tuned']).isoformat(timespec='seconds')}"
                                 f" with 1 false alarm(s): {out}"]
    # Tuning off, or the camera taking no part: the configured model, pointer or not.
    assert tuned_config(replace(cfg, tune=TuneConfig())).cameras["door"].model == ""
    off = parse_daemon_config({"cameras": {"door": {"source": "demo", "tune": False}},
                               "storage": {"path": str(tmp_path / "store")},
                               "tune": {"enabled": True}}, "test.toml")
    assert tuned_config(off).cameras["door"].model == ""
    # A tuned directory that no longer verifies is not used.
    (out / "model.pt").write_bytes((out / "model.pt").read_bytes()[:-10])
    assert tuned_config(cfg).cameras["door"].model == ""


def test_a_pointer_to_another_version_of_the_configured_model_is_ignored(tmp_path: Path) -> None:
    tuned_copy(tmp_path)
    root = tuned_root(str(tmp_path / "store"), "door", "default")
    doc = json.loads((root / POINTER).read_text())
    (root / POINTER).write_text(json.dumps({**doc, "base_signature": "sha256:" + "0" * 64}))
    assert tuned_config(config(tmp_path)).cameras["door"].model == ""  # re-fitted since
    (root / POINTER).write_text("{not json")
    assert tuned_config(config(tmp_path)).cameras["door"].model == ""


def test_each_run_learns_new_false_alarms_and_starts_again_when_a_verdict_is_taken_back(
        tmp_path: Path) -> None:
    store_dir = tmp_path / "store"
    store_dir.mkdir()
    clip = tmp_path / "fa.avi"
    clip.write_bytes(b"a clip")  # plan only looks for the file
    db = store_dir / "events.sqlite"
    stored_false_alarm(db, "fa1", "door", clip, wall=1000.0)
    stored_false_alarm(db, "gone", "door", tmp_path / "deleted.avi", wall=1100.0)  # no clip left
    stored_false_alarm(db, "other", "yard", clip, wall=1200.0)  # another camera's
    cam = config(tmp_path).cameras["door"]
    choice = cam.model_choices[0]
    store = EventStore(db)
    try:
        first = plan("door", choice, choice.model, str(store_dir), store, 1)
        assert first is not None and first.events == ("fa1",) and first.source == choice.model
        assert plan("door", choice, choice.model, str(store_dir), store, 2) is None  # too few
        out = tuned_copy(tmp_path)  # as if fa1 had been learned
        assert plan("door", choice, str(out), str(store_dir), store, 1) is None  # nothing new
        stored_false_alarm(db, "fa2", "door", clip, wall=1300.0)
        second = plan("door", choice, str(out), str(store_dir), store, 1)
        assert second is not None and second.source == str(out)  # on top of what it learned
        assert second.events == ("fa2",) and second.learned == ("fa1", "fa2")
        Reviews(store).set("fa1", "confirmed", "test")  # taken back: start again without it
        third = plan("door", choice, str(out), str(store_dir), store, 1)
        assert third is not None and third.source == choice.model == third.base
        assert third.events == ("fa2",) == third.learned
        Reviews(store).set("fa2", "confirmed", "test")
        fourth = plan("door", choice, str(out), str(store_dir), store, 1)
        assert fourth is not None and fourth.events == ()  # none left: the configured model
    finally:
        store.close()


def test_the_daemon_tunes_on_schedule_switches_without_a_restart_and_undoes_it(
        tmp_path: Path, vtest: Path) -> None:
    """The committed model alarms on a clip with a bright disc; marked false_alarm, the daemon's
    next run tunes with it in a child process and the camera scores the new version from its next
    frame (same capture thread, open event kept); a restarted daemon starts on it; the verdict
    taken back brings the configured model back."""
    clip = injected_clip(vtest, tmp_path / "fa.avi", 60)
    (tmp_path / "store").mkdir()
    stored_false_alarm(tmp_path / "store" / "events.sqlite", "fa1", "door", clip)
    cfg = config(tmp_path, str(vtest), interval=1)
    root = tuned_root(cfg.storage.path, "door", "default")

    def wait(ok: Callable[[], bool], what: str, timeout: float = 120) -> None:
        deadline = time.monotonic() + timeout
        while not ok():
            assert time.monotonic() < deadline, what
            time.sleep(0.2)

    def lane_model(d: Daemon) -> Path:
        return d.worker._lanes["door"].models.models["default"].path  # type: ignore[union-attr]

    def runs(d: Daemon, result: str) -> float:
        return d.registry.get_sample_value("stream_detector_tunes_total",
                                           {"camera": "door", "result": result}) or 0.0

    daemon = Daemon(cfg, open(tmp_path / "stdout", "w"))
    daemon.start()
    try:
        wait(lambda: "door" in daemon.worker._lanes, "camera started")
        capture = daemon._captures["door"].capture
        wait(lambda: runs(daemon, "ok") == 1, "tuned once")
        pointer = json.loads((root / POINTER).read_text())
        tuned = Path(pointer["model"])
        assert pointer["events"] == ["fa1"] and pointer["base"] == str(DEFAULT_MODEL)
        assert json.loads((tuned / "metadata.json").read_text())["lineage"]["events"] == ["fa1"]
        wait(lambda: lane_model(daemon) == tuned, "the camera scores the tuned version")
        assert daemon._captures["door"].capture is capture and capture.is_alive()  # no restart
        assert daemon.cfg.cameras["door"].model == str(tuned)
        assert daemon.registry.get_sample_value("stream_detector_model_false_alarms_learned",
                                                {"camera": "door", "model": "default"}) == 1
        time.sleep(2.5)  # two more looks: nothing new, nothing tuned
        assert runs(daemon, "ok") == 1 and not list(root.glob(".partial-*"))
    finally:
        daemon.stop()
    again = Daemon(cfg, open(tmp_path / "stdout2", "w"))
    again.start()
    try:
        wait(lambda: "door" in again.worker._lanes, "camera started")
        assert lane_model(again) == tuned  # kept across the restart
        Reviews(again.store).set("fa1", "confirmed", "test")
        wait(lambda: runs(again, "reverted") == 1, "the verdict taken back")
        wait(lambda: lane_model(again) == DEFAULT_MODEL, "back on the configured model")
        assert not (root / POINTER).exists() and tuned.is_dir()  # the version stays on disk
        assert runs(again, "ok") == 0
    finally:
        again.stop()


def test_a_tune_that_fails_is_counted_logged_in_one_line_and_changes_nothing(
        tmp_path: Path, caplog: Any) -> None:
    store_dir = tmp_path / "store"
    store_dir.mkdir()
    clip = tmp_path / "fa.mp4"
    clip.write_bytes(b"not a video")
    stored_false_alarm(store_dir / "events.sqlite", "fa1", "door", clip)
    cfg = config(tmp_path)
    switched: list[tuple[str, str, str]] = []
    registry = CollectorRegistry()
    store = EventStore(store_dir / "events.sqlite")
    try:
        tuner = Tuner(cfg.tune, str(store_dir), store, lambda: cfg.cameras,
                      lambda *a: switched.append(a), registry)
        with caplog.at_level("WARNING"):
            tuner.run_once()
    finally:
        store.close()
    assert registry.get_sample_value("stream_detector_tunes_total",
                                     {"camera": "door", "result": "failed"}) == 1
    [line] = [r.getMessage() for r in caplog.records if "tuning failed" in r.getMessage()]
    assert "fa.mp4: not a readable video" in line and "\n" not in line
    root = tuned_root(str(store_dir), "door", "default")
    assert switched == [] and not (root / POINTER).exists() and not list(root.iterdir())


def test_rollback_is_tune_false_and_a_reload(tmp_path: Path, vtest: Path) -> None:
    out = tuned_copy(tmp_path)
    cfg = config(tmp_path, str(vtest), interval=3600)
    daemon = Daemon(cfg, open(tmp_path / "stdout", "w"))
    daemon.start()
    try:
        assert [m.path for m in daemon._captures["door"].models] == [out]
        off = replace(cfg, cameras={"door": replace(cfg.cameras["door"], tune=False)})
        daemon.reload(off)
        assert [m.path for m in daemon._captures["door"].models] == [DEFAULT_MODEL]
        daemon.reload(cfg)
        assert [m.path for m in daemon._captures["door"].models] == [out]
        assert out.is_dir() and (out.parent / POINTER).is_file()  # rollback deletes nothing
    finally:
        daemon.stop()
