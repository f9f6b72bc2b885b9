"""The sealed model directory: the committed demo model is sealed over every file."""

from __future__ import annotations

import json

from stream_detector.config import DEFAULT_MODEL
from stream_detector.model import runtime


def test_the_demo_model_is_sealed_over_every_file() -> None:
    meta = json.loads((DEFAULT_MODEL / "metadata.json").read_text())
    assert sorted(meta["files"]) == sorted(p.name for p in DEFAULT_MODEL.iterdir() if p.name != "metadata.json")
    assert meta["signature"].startswith("sha256:")
    runtime.load(DEFAULT_MODEL, "cpu")
