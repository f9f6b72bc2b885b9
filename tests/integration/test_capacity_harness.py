"""benchmarks/capacity.py at CI size: it generates its H.264 input, runs the real daemon with 1 and
2 cameras, reads /metrics and /proc, runs `bench` on the same file and writes every figure to JSON.

Only behaviour is asserted (every figure present and non-empty), never a speed: CI machines differ.
The figures are printed (`pytest -s`, or the captured output of a failure).
"""

from __future__ import annotations

import json
import math
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from daemon_helpers import ROOT

pytestmark = pytest.mark.integration

SCRIPT = ROOT / "benchmarks" / "capacity.py"


@pytest.fixture(scope="module")
def workdir(tmp_path_factory: pytest.TempPathFactory, vtest: Path) -> Path:
    # Not a skip: ./dev installs ffmpeg, so a missing one means a broken setup.
    if shutil.which("ffmpeg") is None:
        pytest.fail("ffmpeg not found: install ffmpeg (./dev setup installs it with APT_PACKAGES)")
    return tmp_path_factory.mktemp("capacity")


def harness(workdir: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(
        p for p in (str(ROOT), os.environ.get("PYTHONPATH", "")) if p)}
    # The timeout only guards against a hang; it is far above any machine's run time.
    return subprocess.run([sys.executable, str(SCRIPT), "--workdir", str(workdir),
                           "--size", "384x288", "--seconds", "6", *args],
                          capture_output=True, text=True, cwd=ROOT, env=env, timeout=600,
                          check=False)


def number(value: object) -> float:
    assert isinstance(value, (int, float)) and math.isfinite(value), value
    return float(value)


def test_two_camera_counts_and_bench_to_json(workdir: Path) -> None:
    out = workdir / "capacity.json"
    done = harness(workdir, "--cameras", "1,2", "--warmup", "4", "--window", "4",
                   "--bench-frames", "100", "--json", str(out))
    print(done.stdout)
    assert done.returncode == 0, done.stderr
    doc = json.loads(out.read_text())
    assert (doc["input"]["width"], doc["input"]["height"], doc["input"]["fps"]) == (384, 288, 25.0)
    assert doc["daemon"]["scored_per_camera_fps"] == 10.0
    assert [r["cameras"] for r in doc["runs"]] == [1, 2]
    for run in doc["runs"]:
        assert number(run["expected_frames"]) > 0
        assert number(run["frames_read"]) > 0, run
        # The 25 fps input is scored at the demo model's fitted 10 fps: the rest is never handed on.
        assert run["frames_read"] <= 1.2 * run["expected_frames"] + 2, run
        assert number(run["frames_scored"]) > 0, run
        assert number(run["frames_dropped"]) >= 0, run
        p50, p99 = number(run["latency_p50_le_s"]), number(run["latency_p99_le_s"])
        assert 0 < p50 <= p99, run
        assert number(run["cpu_percent"]) > 0, run
        assert number(run["rss_mb"]) > 0, run
        # Files are read with OpenCV, in the daemon's process; each camera's only child encodes
        # its frames for event clips, and is counted apart.
        assert run["children"] == run["recorders"] == run["cameras"], run
    assert doc["runs"][0]["rss_per_extra_camera_mb"] is None  # N=1 is the reference
    number(doc["runs"][1]["rss_per_extra_camera_mb"])
    assert number(doc["bench"]["full_over_decode"]) > 0
    assert number(doc["bench"]["live_over_decode"]) > 0
    # One progress line per N, and the final table with a row per N.
    lines = done.stdout.splitlines()
    assert [line.split(":")[0] for line in lines if line.startswith("cameras ")] == \
        ["cameras 1", "cameras 2"]
    rows = [line for line in lines if line.startswith("| ") and " x 25 (10/s) |" in line]
    assert [row.split(" x ")[0] for row in rows] == ["| 1", "| 2"]


def test_ffmpeg_capture_children_are_measured_apart(workdir: Path) -> None:
    out = workdir / "capacity-ffmpeg.json"
    done = harness(workdir, "--cameras", "2", "--warmup", "4", "--window", "4", "--no-bench",
                   "--camera-key", 'capture="ffmpeg"', "--json", str(out))
    print(done.stdout)
    assert done.returncode == 0, done.stderr
    (run,) = json.loads(out.read_text())["runs"]
    assert number(run["frames_scored"]) > 0, run
    # One ffmpeg per camera decoding, and one encoding its frames for clips, outside the daemon's
    # own CPU and memory figures.
    assert run["children"] == 4 and run["recorders"] == 2, run
    assert number(run["children_cpu_percent"]) > 0 and number(run["children_pss_mb"]) > 0, run
    assert number(run["recorders_cpu_percent"]) > 0, run
    assert "4 child processes: CPU " in done.stdout and "of which 2 recording for clips" in done.stdout


def test_a_daemon_that_exits_at_once_is_an_error_with_its_log(workdir: Path) -> None:
    done = harness(workdir, "--cameras", "1", "--no-bench",
                   "--camera-key", 'model="/nonexistent/model"')
    assert done.returncode == 1, done.stdout + done.stderr
    assert "the daemon exited with 2 before serving /metrics" in done.stderr
    assert "model directory not found" in done.stderr  # the daemon's own line, from its log
