"""Models from the field: `fit` and `record` on the tests' GStreamer RTSP camera.

- `fit --source rtsp://... --duration 20` records 20 s (measured from the frames' arrival), fits on
  all of it, writes a signed model directory that `check-config --probe` accepts for that camera;
- `record --config FILE --camera NAME` reads the camera as the daemon would (its substream, resized,
  credentials never shown), a few seconds at a time with --every/--take;
- a stream that changes size mid-recording is one line and exit code 2.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from daemon_helpers import ROOT, cli, write_config
from mqtt_broker import free_port
from rtsp_helpers import RtspServer, require_ffmpeg, serving

from stream_detector.capture import video_info
from stream_detector.model import load

pytestmark = pytest.mark.integration


@pytest.fixture()
def camera(vtest: Path, tmp_path: Path) -> Iterator[RtspServer]:
    require_ffmpeg()
    with serving(vtest, tmp_path / "rtsp.log") as server:
        yield server


def blocks(entries: list[dict[str, object]]) -> set[int]:
    """Frame numbers covered by metadata source entries named like 'clip[150:200]'."""
    out: set[int] = set()
    for entry in entries:
        start, end = str(entry["name"]).rsplit("[", 1)[1].rstrip("]").split(":")
        out.update(range(int(start), int(end)))
    return out


def test_fit_from_the_camera_for_20_s_writes_a_model_check_config_accepts(
        camera: RtspServer, tmp_path: Path) -> None:
    out, footage = tmp_path / "model", tmp_path / "footage"
    started = time.monotonic()
    done = cli("fit", "--source", camera.url, "--duration", "20", "--epochs", "1", "--out", str(out),
               "--keep-footage", str(footage), timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    print(f"fit from the camera: {time.monotonic() - started:.0f} s in all; {done.stdout.strip()}")
    assert "recording camera [" in done.stderr  # progress while it records
    files = sorted(footage.glob("*.avi"))
    assert len(files) == 1 and files[0].name.startswith("camera-")
    info = video_info(files[0])
    assert (info.width, info.height, info.fps) == (384, 288, 10.0)
    assert info.frames == 200, info  # 20 s at the camera's 10 frames/s: one block of fit
    span = float(done.stdout.split("spanning ")[1].split("s")[0])  # first to last frame's arrival
    assert 19.5 <= span <= 21.5, done.stdout  # 200 frames 0.1 s apart, as they arrived
    meta = json.loads((out / "metadata.json").read_text())
    used = blocks(meta["training"]["sources"]) | blocks(meta["calibration_footage"]["sources"])
    assert len(used) >= 0.95 * info.frames and max(used) >= info.frames - 10  # all 20 s fitted
    assert meta["fps"] == 10.0 and meta["calibration_footage"]["held_back"]
    load(out, "cpu")  # sealed: checksums and signature hold
    port = free_port()
    config = write_config(tmp_path / "config.toml", {
        "cameras": {"street": {"source": camera.url, "model": str(out)}},
        "metrics": {"port": port}, "storage": {"path": str(tmp_path / "store")}})
    checked = cli("check-config", "--probe", str(config))
    assert checked.returncode == 0, checked.stderr
    assert "camera street: ok, 384x288 frames" in checked.stdout


def test_record_reads_the_camera_as_the_daemon_does_a_few_seconds_at_a_time(
        camera: RtspServer, tmp_path: Path) -> None:
    """The camera's substream (its main stream is closed), resized to its width/height, through
    its credentials (which no output shows): two windows of 3 s, 4 s apart."""
    closed = free_port()
    substream = camera.url.replace("rtsp://", "rtsp://viewer:s3cret-pw@")
    config = write_config(tmp_path / "config.toml", {
        "cameras": {"door": {"source": f"rtsp://viewer:s3cret-pw@127.0.0.1:{closed}/main",
                             "detect_source": substream, "width": 192, "height": 144}},
        "metrics": {"port": free_port()}, "storage": {"path": str(tmp_path / "store")}})
    done = cli("record", "--config", str(config), "--camera", "door", "--duration", "7",
               "--every", "4", "--take", "3", "--out", str(tmp_path / "footage"), timeout=120)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "s3cret-pw" not in done.stdout + done.stderr
    files = sorted((tmp_path / "footage").glob("door-*.avi"))
    infos = [video_info(f) for f in files]
    assert len(files) == 2 and all((i.width, i.height) == (192, 144) for i in infos), infos
    assert [i.frames for i in infos] == [30, 30], infos  # 3 s each at 10 frames/s


def test_a_stream_that_changes_size_while_recording_is_one_line_exit_2(
        camera: RtspServer, tmp_path: Path) -> None:
    footage = tmp_path / "footage"
    proc = subprocess.Popen([sys.executable, "-m", "stream_detector", "record", "--source",
                             camera.url, "--duration", "30", "--out", str(footage)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=ROOT)
    try:
        deadline = time.monotonic() + 30
        while not list(footage.glob("*.avi")):  # recording: its file is open
            assert proc.poll() is None and time.monotonic() < deadline, proc.communicate()
            time.sleep(0.2)
        camera.kill()
        camera.size = (320, 240)
        camera.start()
        _, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGKILL)
            proc.wait()
    lines = [line for line in err.splitlines() if line.startswith("stream-detector: error:")]
    assert proc.returncode == 2 and len(lines) == 1, err
    assert "changed size from 384x288 to 320x240" in lines[0] and "Traceback" not in err
