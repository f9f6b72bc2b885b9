"""End to end through the command line: fit a small model on real footage, score, evaluate, bad input."""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest
from daemon_helpers import write_clip

from stream_detector.capture import Injection

TINY = """[detector]
long_side = 96
window = 4
channels = 8
temporal_channels = 8
epochs = 3
max_train_frames = 800
"""


def cli(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONWARNINGS": "ignore"}
    proc = subprocess.run([sys.executable, "-m", "stream_detector", *args], capture_output=True,
                          text=True, env=env, timeout=600)
    if check:
        assert proc.returncode == 0, proc.stderr
    return proc


@pytest.fixture(scope="module")
def fitted(tmp_path_factory: pytest.TempPathFactory, vtest: Path) -> Path:
    tmp = tmp_path_factory.mktemp("fit")
    (tmp / "tiny.toml").write_text(TINY)
    proc = cli("fit", "--source", str(vtest), "--out", str(tmp / "model"), "--config",
               str(tmp / "tiny.toml"), "--device", "cpu")
    assert "training [" in proc.stderr  # progress is shown
    return tmp / "model"


def test_fit_writes_a_complete_model_directory(fitted: Path) -> None:
    meta = json.loads((fitted / "metadata.json").read_text())
    assert meta["working_size"] == [96, 72] and meta["window"] == 4
    # all 795 frames in four blocks of 200; the last block is held back for calibration only
    held = meta["calibration_footage"]
    assert meta["training"]["frames"] == 600 and held["frames"] == 195 and held["held_back"]
    trained = {s["name"] for s in meta["training"]["sources"]}
    assert [s["name"] for s in held["sources"]] == ["vtest[600:795]"] and "vtest[0:200]" in trained
    assert meta["motion"] is True and meta["pretext"] == "motion"
    assert len(meta["files"]["model.pt"]["sha256"]) == 64


def test_injected_object_scores_clearly_higher(fitted: Path, vtest: Path, tmp_path: Path) -> None:
    clip = tmp_path / "injected.avi"  # background from the held-back block: the network never saw it
    write_clip(vtest, clip, first=650, count=120, injection=Injection(60, 90))
    cli("score", "--model", str(fitted), "--source", str(clip), "--out", str(tmp_path / "s.csv"),
        "--maps", str(tmp_path / "maps.npy"), "--device", "cpu")
    with open(tmp_path / "s.csv") as fh:
        rows = list(csv.DictReader(fh))
    assert len(rows) == 120 and rows[0]["warmup"] == "1" and rows[5]["warmup"] == "0"
    scores = np.array([float(r["score"]) for r in rows])
    clean, injected = np.r_[scores[5:60], scores[100:]], scores[62:90]
    assert np.median(injected) > 2 * np.percentile(clean, 95), (np.median(injected), np.percentile(clean, 95))
    maps = np.load(tmp_path / "maps.npy")
    assert maps.shape[0] == 120 and maps.ndim == 3


def test_eval_writes_report_and_checks_label_lengths(fitted: Path, vtest: Path, tmp_path: Path) -> None:
    data = tmp_path / "data"
    (data / "test").mkdir(parents=True)
    write_clip(vtest, data / "test" / "a.avi", first=400, count=100, injection=Injection(50, 80))
    write_clip(vtest, data / "test" / "b.avi", first=600, count=60, injection=None)
    labels = {"a": [0] * 50 + [1] * 30 + [0] * 20, "b": [0] * 60}
    (data / "labels.json").write_text(json.dumps(labels))
    proc = cli("eval", "--model", str(fitted), "--data", str(data), "--report", str(tmp_path / "r"),
               "--device", "cpu")
    summary = json.loads((tmp_path / "r" / "summary.json").read_text())
    assert summary["frames"] == 160 and summary["anomalous_frames"] == 30
    assert summary["auc_causal"] > 0.8
    assert "literature protocol" in proc.stdout
    operator = summary["operator"]  # what an operator gets: the one injected episode, alarms replayed
    assert operator["episodes"] == 1 and len(operator["per_episode"]) == 1
    assert operator["normal_hours"] == pytest.approx((20 + 50 + 60) / 10 / 3600)
    assert "episodes alarmed at that threshold" in proc.stdout
    for png in ("roc.png", "timelines.png"):
        img = cv2.imread(str(tmp_path / "r" / png))
        assert img is not None and img.shape[0] > 100
    labels["b"] = [0] * 59
    (data / "labels.json").write_text(json.dumps(labels))
    bad = cli("eval", "--model", str(fitted), "--data", str(data), "--report", str(tmp_path / "r2"), check=False)
    assert bad.returncode == 2
    assert "video has 60 frames but labels.json lists 59" in bad.stderr
    assert "Traceback" not in bad.stderr


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["fit", "--source", "/nonexistent.mp4", "--out", "OUT"], "/nonexistent.mp4: no such file or folder"),
        (["fit", "--source", "NOTVIDEO", "--out", "OUT"], "not a readable video"),
        (["score", "--model", "NOMODEL", "--source", "VTEST", "--out", "OUT"], "model directory not found"),
        (["score", "--model", "TRUNCATED", "--source", "VTEST", "--out", "OUT"], "checksum does not match"),
        (["eval", "--model", "MODEL", "--data", "EMPTY", "--report", "OUT"], "no labels.json"),
        (["score", "--model", "MODEL", "--source", "WIDE", "--out", "OUT"], "does not fit model"),
    ],
)
def test_bad_input_is_one_line_and_exit_2(args: list[str], message: str, fitted: Path, vtest: Path,
                                          tmp_path: Path) -> None:
    notvideo = tmp_path / "notes.mp4"
    notvideo.write_text("not a video")
    truncated = tmp_path / "truncated"
    truncated.mkdir()
    for f in ("metadata.json", "model.pt"):
        (truncated / f).write_bytes((fitted / f).read_bytes())
    (truncated / "model.pt").write_bytes((fitted / "model.pt").read_bytes()[:2000])
    (tmp_path / "empty").mkdir()
    wide = tmp_path / "wide.avi"
    writer = cv2.VideoWriter(str(wide), cv2.VideoWriter_fourcc(*"MJPG"), 10.0, (320, 100))
    for _ in range(5):
        writer.write(np.zeros((100, 320, 3), np.uint8))
    writer.release()
    subst = {"NOTVIDEO": str(notvideo), "OUT": str(tmp_path / "out"), "NOMODEL": str(tmp_path / "none"),
             "VTEST": str(vtest), "TRUNCATED": str(truncated), "MODEL": str(fitted),
             "EMPTY": str(tmp_path / "empty"), "WIDE": str(wide)}
    proc = cli(*[subst.get(a, a) for a in args], check=False)
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and message in lines[0] and lines[0].startswith("stream-detector: error:")


def test_ped2_labels_match_decoded_frames(ped2: Path) -> None:
    """The real benchmark set passes the same consistency check `eval` applies."""
    from stream_detector.capture import iter_frames
    from stream_detector.offline import check_length, load_labelled

    clips = load_labelled(ped2)
    assert len(clips) == 12
    total = 0
    for clip in clips:
        n = sum(1 for _ in iter_frames(clip.path))
        check_length(clip, n)
        total += n
    assert total == 2010 and sum(int(c.labels.sum()) for c in clips) == 1648


def test_fit_in_colour(vtest: Path, tmp_path: Path) -> None:
    (tmp_path / "c.toml").write_text(TINY.replace("epochs = 3", "epochs = 1").replace(
        "max_train_frames = 800", "max_train_frames = 60") + "color = true\n")
    cli("fit", "--source", str(vtest), "--out", str(tmp_path / "m"), "--config", str(tmp_path / "c.toml"),
        "--device", "cpu")
    meta = json.loads((tmp_path / "m" / "metadata.json").read_text())
    assert meta["color"] is True and meta["detector"]["color"] is True
    clip = tmp_path / "c.avi"
    write_clip(vtest, clip, first=0, count=12, injection=None)
    cli("score", "--model", str(tmp_path / "m"), "--source", str(clip), "--out", str(tmp_path / "s.csv"))
    assert len((tmp_path / "s.csv").read_text().splitlines()) == 13
