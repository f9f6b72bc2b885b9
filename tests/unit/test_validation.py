"""What the bad-input table does not show: what passes, reloads, the sealed model directory, probes
and the `events` listing."""

from __future__ import annotations

import json
import shutil
import socket
from pathlib import Path

import numpy as np
import pytest

from stream_detector import cli
from stream_detector.config import StorageConfig, load_daemon_config
from stream_detector.daemon import load_config
from stream_detector.errors import ConfigError, ModelError
from stream_detector.detect import EventPolicy, EventTracker
from stream_detector.messages import Event, FrameScore
from stream_detector.config import DEFAULT_MODEL
from stream_detector.model import runtime
from stream_detector.model.manifest import sign
from stream_detector.outputs import EventStore, event_payload


def write_cfg(tmp: Path, extra: str = "", port: int = 0) -> Path:
    path = tmp / "c.toml"
    path.write_text(f'[cameras.door]\nsource = "demo"\n[storage]\npath = "{tmp}/store"\n'
                    f"[metrics]\nport = {port}\n{extra}")
    return path


def test_a_good_config_passes_and_creates_nothing(tmp_path: Path,
                                                  capsys: pytest.CaptureFixture[str]) -> None:
    cfg = write_cfg(tmp_path, '[mqtt]\nhost = "localhost"\n')
    assert cli.main(["check-config", str(cfg)]) == 0
    assert "ok (1 camera(s): door)" in capsys.readouterr().out
    assert [p.name for p in tmp_path.iterdir()] == ["c.toml"]


def test_a_reload_may_keep_its_own_metrics_port_but_not_take_a_busy_one(tmp_path: Path) -> None:
    with socket.create_server(("127.0.0.1", 0)) as ours:  # the running daemon's metrics server
        port = ours.getsockname()[1]
        running = load_daemon_config(write_cfg(tmp_path, port=port))
        with pytest.raises(ConfigError, match=rf"metrics\.port: {port} is already in use"):
            load_config(tmp_path / "c.toml")  # a fresh start could not listen there
        assert load_config(tmp_path / "c.toml", running=running).metrics.port == port
        write_cfg(tmp_path, '[mqtt]\ntls_ca_file = "/nonexistent/ca.pem"\n', port=port)
        with pytest.raises(ConfigError, match=r"mqtt\.tls_ca_file: /nonexistent/ca\.pem: no such file"):
            load_config(tmp_path / "c.toml", running=running)  # the rest is checked as at start


def test_storage_that_does_not_exist_yet_is_fine_if_it_can_be_created(tmp_path: Path) -> None:
    from stream_detector.daemon.environment import check_storage

    check_storage(StorageConfig(path=str(tmp_path / "a" / "b")), "c.toml")
    assert list(tmp_path.iterdir()) == []  # looked, did not create


def test_probe_reads_a_frame_from_each_camera(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["check-config", "--probe", str(write_cfg(tmp_path))]) == 0
    out = capsys.readouterr().out
    assert "camera door: ok, 768x576 frames" in out and "each delivered a frame" in out


# --- the sealed model directory -----------------------------------------------------------------


def test_the_demo_model_is_sealed_over_every_file() -> None:
    meta = json.loads((DEFAULT_MODEL / "metadata.json").read_text())
    assert sorted(meta["files"]) == sorted(p.name for p in DEFAULT_MODEL.iterdir() if p.name != "metadata.json")
    assert meta["signature"].startswith("sha256:")
    runtime.load(DEFAULT_MODEL, "cpu")


def test_an_edited_model_card_breaks_the_seal_until_signed_again(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    model = tmp_path / "vtest"
    shutil.copytree(DEFAULT_MODEL, model)
    card = model / "MODEL_CARD.md"
    card.write_text(card.read_text() + "\nA note.\n")
    with pytest.raises(ModelError, match=r"MODEL_CARD\.md: checksum does not match"):
        runtime.load(model, "cpu")
    assert cli.main(["sign", str(model)]) == 0 and "signed" in capsys.readouterr().out
    assert runtime.load(model, "cpu").threshold(1.0) == runtime.load(DEFAULT_MODEL, "cpu").threshold(1.0)
    assert (model / "model.pt").read_bytes() == (DEFAULT_MODEL / "model.pt").read_bytes()


def test_export_seals_what_it_writes(tiny_model_dir: Path) -> None:
    meta = json.loads((tiny_model_dir / "metadata.json").read_text())
    assert list(meta["files"]) == ["model.pt"] and len(meta["signature"]) == 71
    (tiny_model_dir / "metadata.json").write_text(json.dumps({**meta, "fps": 12.5}))
    with pytest.raises(ModelError, match="signature: does not match"):
        runtime.load(tiny_model_dir, "cpu")
    sign(tiny_model_dir)  # fps is not baked into the module: re-sealed, it loads
    assert runtime.load(tiny_model_dir, "cpu").metadata["fps"] == 12.5


# --- events ---------------------------------------------------------------------------------------


def test_an_update_is_stamped_with_its_own_time() -> None:
    tracker = EventTracker("door", EventPolicy(1.0, 0.8, min_duration=0.0, cooldown=1.0,
                                               update_interval=2.0))
    def score(i: int, value: float) -> FrameScore:
        return FrameScore("door", i, i * 1.0, 1000.0 + i, float(i), value, value, False, np.zeros((1, 1)))

    events = [e for i in range(6) for e in tracker.observe(score(i, 5.0))]
    assert [e.type for e in events] == ["start", "update", "update"]
    assert [e.start_wall for e in events] == [1000.0] * 3
    assert [e.update_wall for e in events] == [None, 1002.0, 1004.0]


def test_events_lists_each_row_at_its_own_time(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    import datetime as dt

    cfg = write_cfg(tmp_path)
    store = EventStore.from_config(load_daemon_config(cfg).storage)
    start = Event("e1", "door", "start", 1000.0, 0.0, None, None, 5.0, 0, None, 5.0)
    update = Event("e1", "door", "update", 1000.0, 0.0, None, None, 6.0, 3, None, 6.0, update_wall=1600.0)
    end = Event("e1", "door", "end", 1000.0, 0.0, 2200.0, 12.0, 6.0, 3, None, 0.5)
    for ev in (start, update, end):
        store.append(ev, event_payload(ev, None))
    store.close()
    assert cli.main(["events", "--config", str(cfg)]) == 0
    rows = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    want = [dt.datetime.fromtimestamp(t).isoformat(timespec="seconds") for t in (1000, 1600, 2200)]
    assert [r["time"] for r in rows] == want and [r["type"] for r in rows] == ["start", "update", "end"]


def test_a_port_taken_after_the_check_stops_start_before_the_broker(tmp_path: Path) -> None:
    """The check and the bind are not atomic: start() listens first, so it fails unconnected."""
    import io

    from stream_detector.config import parse_daemon_config
    from stream_detector.daemon import Daemon

    with socket.create_server(("127.0.0.1", 0)) as broker, socket.create_server(("127.0.0.1", 0)) as busy:
        cfg = parse_daemon_config({"cameras": {"door": {"source": "demo"}},
                                   "mqtt": {"port": broker.getsockname()[1]},
                                   "metrics": {"port": busy.getsockname()[1]},
                                   "storage": {"path": str(tmp_path)}}, "c.toml")
        daemon = Daemon(cfg, io.StringIO())
        try:
            with pytest.raises(ConfigError, match=r"^c\.toml: metrics\.port: cannot listen on"):
                daemon.start()
        finally:
            daemon.store.close()
        broker.settimeout(0.3)
        with pytest.raises(TimeoutError):
            broker.accept()
