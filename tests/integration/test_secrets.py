"""The configured passwords, given as ${VAR}, found nowhere: the real daemon at debug level reads
an RTSP camera that asks for a password (through ffmpeg and through OpenCV's reader process),
fails on a camera with a wrong one, and logs in to a mosquitto that asks for one; no password,
whole or in part, is then in its log, /metrics, check-config's output, the store or `ps`.
"""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import quote

import pytest
from daemon_helpers import DaemonProcess, cli, write_config
from mqtt_broker import Broker, free_port, running_broker
from rtsp_helpers import RtspServer, require_ffmpeg, require_gi_python

pytestmark = pytest.mark.integration

# Each password's pieces between the characters a URL must encode are distinctive, so a piece
# that leaks (an error quoting the text before a '#') is found too.
MQTT_PASSWORD = "Mqz7#kVxr/pQjd?w9Lm"
CAMERA_PASSWORD = "Cq4t#zHnp/Yy8d?uTr2"
WRONG_PASSWORD = "Wg5b#oPm3x/eRt6"
PIECES = [piece for pw in (MQTT_PASSWORD, CAMERA_PASSWORD, WRONG_PASSWORD)
          for piece in pw.replace("#", " ").replace("/", " ").replace("?", " ").split()]


def leaks(text: str | bytes) -> list[str]:
    data = text.decode("utf-8", "replace") if isinstance(text, bytes) else text
    return [piece for piece in PIECES if piece in data]


def command_lines() -> list[bytes]:
    out = []
    for path in Path("/proc").glob("[0-9]*/cmdline"):
        try:
            out.append(path.read_bytes())
        except OSError:  # exited meanwhile
            continue
    return out


@pytest.fixture()
def camera(vtest: Path, tmp_path: Path) -> Iterator[RtspServer]:
    require_gi_python()
    require_ffmpeg()
    server = RtspServer(vtest, tmp_path / "rtsp.log", auth=f"viewer:{CAMERA_PASSWORD}")
    server.start()
    try:
        yield server
    finally:
        server.kill()


@pytest.fixture()
def broker(tmp_path: Path) -> Iterator[Broker]:
    (tmp_path / "broker").mkdir()
    with running_broker(tmp_path / "broker", users={"sd": MQTT_PASSWORD}) as b:
        yield b


def test_passwords_given_as_variables_are_found_nowhere(camera: RtspServer, broker: Broker,
                                                        tmp_path: Path) -> None:
    port = free_port()
    url = camera.url.replace("rtsp://", "rtsp://viewer:${SD_CAMERA_PASSWORD}@")
    bad = camera.url.replace("rtsp://", "rtsp://viewer:${SD_WRONG_PASSWORD}@")
    config = write_config(tmp_path / "config.toml", {
        "node_id": "secret-host",
        "cameras": {"door": {"source": url, "capture": "ffmpeg"},
                    "yard": {"source": url, "capture": "opencv"},
                    "gate": {"source": bad, "capture": "ffmpeg"}},
        "mqtt": {"port": broker.port, "username": "sd", "password": "${SD_MQTT_PASSWORD}"},
        "metrics": {"port": port},
        "storage": {"path": str(tmp_path / "store")},
        "logging": {"level": "debug"},
    })
    env = {"SD_MQTT_PASSWORD": MQTT_PASSWORD,  # URL passwords are written percent-encoded
           "SD_CAMERA_PASSWORD": quote(CAMERA_PASSWORD, safe=""),
           "SD_WRONG_PASSWORD": quote(WRONG_PASSWORD, safe="")}
    daemon = DaemonProcess(config, port, tmp_path, env=env)
    try:
        for cam in ("door", "yard"):  # the camera took the password: it was really used
            daemon.wait_metric("stream_detector_stream_up", lambda v: v == 1, 90, camera=cam)
        daemon.wait_metric("stream_detector_mqtt_connected", lambda v: v == 1, 30)
        # door's clip recorder copies the stream with the password given on a pipe too
        daemon.wait_metric("stream_detector_recorder_up", lambda v: v == 1, 30, camera="door")
        daemon.wait_log("camera gate: cannot open stream", timeout=30)
        # Every process but the test's camera, which is given its own password to check
        ps = "\n".join(line for line in subprocess.run(
            ["ps", "-eww", "-o", "pid,args"], capture_output=True, text=True, check=True,
        ).stdout.splitlines() if "rtsp_server.py" not in line)
        cmdlines = b"\n".join(c for c in command_lines() if b"rtsp_server.py" not in c)
        assert "-f concat" in ps and "opencv_reader.py" in ps  # the children were running
        status, metrics = daemon.get("/metrics")
        assert status == 200
        rc, _ = daemon.stop(15)
        assert rc == 0
    finally:
        daemon.close()
    # The checks run knows, then each camera opened once: gate's wrong password is the error.
    checked = cli("check-config", "--probe", "--timeout", "20", str(config), env=env)
    assert checked.returncode == 2 and "camera door: ok" in checked.stdout, checked
    assert "cameras.gate.source: probe failed: rtsp://viewer:***@" in checked.stderr
    log = daemon.log()
    assert " DEBUG " in log and "viewer:***@" in log  # debug lines, and the URL shown masked
    stored = b"".join(p.read_bytes() for p in (tmp_path / "store").rglob("*") if p.is_file())
    found = {"log": leaks(log), "stdout": leaks(daemon.stdout_path.read_bytes()),
             "ps": leaks(ps), "/proc/*/cmdline": leaks(cmdlines), "/metrics": leaks(metrics),
             "check-config": leaks(checked.stdout + checked.stderr), "store": leaks(stored)}
    assert all(not pieces for pieces in found.values()), found
