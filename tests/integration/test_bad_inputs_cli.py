"""A handful of the bad inputs of tests/unit/test_bad_inputs.py as real processes next to a real
mosquitto: one line, exit code 2, no file created, no connection to the broker. And the daemon fed
broken video files: it keeps running and logs one line per change of state."""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from daemon_helpers import ROOT, DaemonProcess, write_clip, write_config
from mqtt_broker import Broker, free_port, running_broker, subscribed

from stream_detector.config import DEFAULT_MODEL


@pytest.fixture(scope="module")
def broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Broker]:
    with running_broker(tmp_path_factory.mktemp("broker")) as b:
        deadline = time.monotonic() + 10  # the start-up probe's connection is logged late: wait
        while "closed its connection" not in broker_log(b) and time.monotonic() < deadline:
            time.sleep(0.05)
        yield b


def broker_log(broker: Broker) -> str:
    return (broker.workdir / "mosquitto.log").read_text(errors="replace")


def edited_demo_model(tmp: Path) -> Path:
    """The demo model with its alarm floor raised by hand, not re-signed."""
    model = tmp / "model"
    shutil.copytree(DEFAULT_MODEL, model)
    meta = json.loads((model / "metadata.json").read_text())
    meta["calibration"]["floor"] = 1e3
    (model / "metadata.json").write_text(json.dumps(meta))
    return model


CASES = [  # (id, config bytes with TMP, MODEL, BROKER, BUSY placeholders, what the line names)
    ("BOM", b"\xef\xbb\xbf[cameras.door]\nsource = 'demo'\n", r"byte-order mark"),
    ("binary", bytes(range(256)) * 4, r"not a UTF-8 text file"),
    ("metrics port in use, broker configured",
     b"[cameras.door]\nsource = 'demo'\n[metrics]\nport = BUSY\n", r"metrics\.port: \d+ is already in use"),
    ("/etc/passwd as a source", b"[cameras.door]\nsource = '/etc/passwd'\n",
     r"cameras\.door\.source: /etc/passwd: not a readable video"),
    ("edited model", b"[cameras.door]\nsource = 'demo'\nmodel = 'MODEL'\n",
     r"cameras\.door\.model: .*metadata\.json: signature: does not match"),
    ("stale_after = inf", b"[cameras.door]\nsource = 'demo'\nstale_after = inf\n",
     r"cameras\.door\.stale_after: expected a finite number"),
    ("TLS client certificate missing",
     b"[cameras.door]\nsource = 'demo'\n[mqtt]\nhost = '127.0.0.1'\nport = BROKER\n"
     b"tls_ca_file = '/etc/ssl/certs/ca-certificates.crt'\ntls_cert_file = 'TMP/c.crt'\n"
     b"tls_key_file = 'TMP/c.key'\n", r"mqtt\.tls_cert_file: .*c\.crt: no such file"),
]


@pytest.mark.parametrize(("config", "expected"), [pytest.param(c, e, id=i) for i, c, e in CASES])
def test_refused_by_run_and_check_config_before_anything_starts(
        config: bytes, expected: str, broker: Broker, tmp_path: Path) -> None:
    busy = socket.create_server(("127.0.0.1", 0))
    procs: dict[str, subprocess.Popen[str]] = {}
    try:
        subst = {b"TMP": str(tmp_path).encode(), b"MODEL": str(edited_demo_model(tmp_path)).encode(),
                 b"BROKER": str(broker.port).encode(), b"BUSY": str(busy.getsockname()[1]).encode()}
        for k, v in subst.items():
            config = config.replace(k, v)
        if b"[mqtt]" not in config:
            config += f"\n[mqtt]\nhost = '127.0.0.1'\nport = {broker.port}\n".encode()
        if b"[storage]" not in config:
            config += f"[storage]\npath = '{tmp_path}/store'\n".encode()
        if b"[metrics]" not in config:
            config += b"[metrics]\nport = 0\n"
        path = tmp_path / "bad.toml"
        path.write_bytes(config)
        before = set(tmp_path.rglob("*"))
        seen_before = broker_log(broker).count("New connection")
        procs = {cmd: subprocess.Popen([sys.executable, "-m", "stream_detector", *args], cwd=ROOT,
                                       stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
                 for cmd, args in (("check-config", ["check-config", str(path)]),
                                   ("run", ["run", "--config", str(path)]))}
        results = {cmd: (*p.communicate(timeout=120), p.returncode) for cmd, p in procs.items()}
    finally:
        busy.close()
        for p in procs.values():
            if p.poll() is None:
                p.kill()
    for cmd, (out, err, rc) in results.items():
        lines = err.strip().splitlines()
        assert rc == 2 and len(lines) == 1, (cmd, rc, err)
        assert lines[0].startswith(f"stream-detector: error: {path}: "), (cmd, lines[0])
        assert re.search(expected, lines[0]), (cmd, lines[0])
        assert out == ""
    assert set(tmp_path.rglob("*")) == before  # no store, no snapshot folder
    time.sleep(0.2)
    assert broker_log(broker).count("New connection") == seen_before  # nobody connected


def test_the_broker_log_does_show_a_connection(broker: Broker) -> None:
    """The control for the check above: a client that does connect is seen in the broker's log."""
    seen = broker_log(broker).count("New connection")
    with subscribed(broker.port, "x"):
        time.sleep(0.3)
    assert broker_log(broker).count("New connection") > seen


def test_events_refuses_a_missing_store_and_creates_none(tmp_path: Path) -> None:
    cfg = write_config(tmp_path / "c.toml", {"cameras": {"door": {"source": "demo"}},
                                             "storage": {"path": str(tmp_path / "store")}})
    done = subprocess.run([sys.executable, "-m", "stream_detector", "events", "--config", str(cfg)],
                          capture_output=True, text=True, cwd=tmp_path, timeout=60)
    assert done.returncode == 2 and len(done.stderr.strip().splitlines()) == 1, done.stderr
    assert f"{cfg}: storage.path: no event store at" in done.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["c.toml"]  # nothing made, here or there


def test_daemon_rides_out_broken_video_files(tmp_path: Path, vtest: Path) -> None:
    """A real video cut short, and a clip that turns into random bytes while it plays: the daemon
    keeps running, the broken camera is reported once and retried, the log stays short."""
    cut = tmp_path / "cut.avi"
    cut.write_bytes(vtest.read_bytes()[:2_500_000])
    clip = write_clip(vtest, tmp_path / "clip.avi", first=0, count=30, size=(192, 144))
    good = clip.read_bytes()
    port = free_port()
    config = write_config(tmp_path / "c.toml", {
        "cameras": {"cut": {"source": str(cut), "loop": True},
                    "turns_bad": {"source": str(clip), "loop": True, "stale_after": 2.0}},
        "metrics": {"port": port}, "storage": {"path": str(tmp_path / "store")}})
    daemon = DaemonProcess(config, port, tmp_path)
    try:
        daemon.wait_up()
        daemon.wait_metric("stream_detector_frames_read_total", lambda v: v >= 20, 60, camera="turns_bad")
        daemon.wait_metric("stream_detector_frames_read_total", lambda v: v >= 20, 60, camera="cut")
        clip.write_bytes(bytes(np.random.default_rng(3).integers(0, 256, 64 * 1024, dtype=np.uint8)))
        daemon.wait_metric("stream_detector_reconnects_total", lambda v: v >= 3, 60, camera="turns_bad")
        assert daemon.value("stream_detector_stream_up", camera="turns_bad") == 0
        clip.write_bytes(good)
        daemon.wait_metric("stream_detector_stream_up", lambda v: v == 1, 60, camera="turns_bad")
        daemon.assert_running()
        daemon.signal(signal.SIGTERM)
        assert daemon.proc.wait(30) == 0
    finally:
        daemon.close()
    log = daemon.log()
    assert "Traceback" not in log
    bad = [line for line in log.splitlines() if "camera turns_bad" in line]
    assert len([x for x in bad if "stream lost" in x or "cannot open" in x]) == 1, bad
    assert len([x for x in bad if "stream up" in x]) == 2, bad
    assert len(log.splitlines()) < 30, log  # no flood: neither ours nor FFmpeg's


def test_storage_on_a_read_only_filesystem(tmp_path: Path) -> None:
    """A real read-only mount (root ignores permission bits, not EROFS), in a private mount
    namespace. A developer's machine that forbids one skips with the reason; CI runs as root on a
    machine that allows it, so there a missing unshare(1) or permission fails the test."""
    in_ci = os.environ.get("CI", "").lower() == "true"
    if shutil.which("unshare") is None:
        (pytest.fail if in_ci else pytest.skip)("no unshare(1) (util-linux)")
    store = tmp_path / "store"
    store.mkdir()
    cfg = write_config(tmp_path / "c.toml", {"cameras": {"door": {"source": "demo"}},
                                             "storage": {"path": str(store)}, "metrics": {"port": 0}})
    script = (f"mount -o bind,ro '{store}' '{store}' || exit 99; "
              f"exec '{sys.executable}' -m stream_detector check-config '{cfg}'")
    done = subprocess.run(["unshare", "-m", "sh", "-c", script], capture_output=True, text=True,
                          cwd=ROOT, timeout=120)
    if done.returncode == 99 or "Operation not permitted" in done.stderr:
        (pytest.fail if in_ci else pytest.skip)("no permission for a private read-only mount here")
    assert done.returncode == 2, done.stderr
    assert done.stderr.strip() == (f"stream-detector: error: {cfg}: storage.path: {store} is not "
                                   f"writable (read-only or permission denied)")


def test_probe_reads_a_frame_from_a_real_rtsp_camera_and_blames_a_dead_one(
        tmp_path: Path, vtest: Path) -> None:
    """check-config does not contact network cameras; --probe does, once each, with a timeout."""
    from rtsp_helpers import RtspServer, require_gi_python

    require_gi_python()
    server = RtspServer(vtest, tmp_path / "rtsp_server.log")
    dead = f"rtsp://127.0.0.1:{free_port()}/gone"
    cfg = write_config(tmp_path / "c.toml", {
        "cameras": {"street": {"source": server.url}, "gone": {"source": dead}},
        "storage": {"path": str(tmp_path / "store")}, "metrics": {"port": 0}})
    try:
        server.start()
        plain = subprocess.run([sys.executable, "-m", "stream_detector", "check-config", str(cfg)],
                               capture_output=True, text=True, cwd=ROOT, timeout=120)
        probed = subprocess.run([sys.executable, "-m", "stream_detector", "check-config", "--probe",
                                 "--timeout", "20", str(cfg)],
                                capture_output=True, text=True, cwd=ROOT, timeout=120)
    finally:
        server.kill()
    assert plain.returncode == 0, plain.stderr  # the dead camera is not contacted without --probe
    assert probed.returncode == 2, probed.stderr
    assert "camera street: ok, 384x288 frames" in probed.stdout  # the server streams at half size
    assert "camera gone: FAILED" in probed.stdout
    assert probed.stderr.strip().startswith(f"stream-detector: error: {cfg}: cameras.gone.source: "
                                            f"probe failed: {dead}: cannot open")
    assert len(probed.stderr.strip().splitlines()) == 1
