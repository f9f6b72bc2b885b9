"""Export: the TorchScript round trip matches the eager model, and the directory is sealed."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import build_detector, frames, tiny_config

from stream_detector.errors import ModelError
from stream_detector.model import CUES, runtime
from stream_detector.model.manifest import sign


@pytest.mark.parametrize("pretext", ["predict", "motion"])
def test_torchscript_round_trip_matches_eager(tmp_path: Path, pretext: str) -> None:
    det, slicer = build_detector(tiny_config(pretext=pretext))
    scripted = torch.jit.script(det)
    gray = frames(6)
    rng = np.random.default_rng(3)
    motion = rng.normal(0, 1, (6, 2, 48, 64)).astype(np.float32)
    scene = np.stack([rng.random((6, 48, 64)) < 0.3, rng.uniform(0, 5, (6, 48, 64))], 1).astype(np.float32)
    x = torch.from_numpy(np.concatenate([gray[:, None], motion, scene], 1))
    feats = det.encode(x)
    args = (x, feats, torch.tensor([[0, 1, 2, 3], [2, 3, 4, 5]]))
    eager = det(*args)
    assert eager.cell_error.shape == (2, len(CUES), *slicer.grid)
    assert (eager.cell_error[:, CUES.index("heading")] > 0).any()  # every cue measured
    assert (eager.cell_error[:, CUES.index("dwell")] > 0).any()
    torch.testing.assert_close(scripted(*args).cell_score, eager.cell_score)
    path = tmp_path / "m.pt"
    scripted.save(str(path))
    loaded = torch.jit.load(str(path))
    torch.testing.assert_close(loaded.encode(x), feats)
    torch.testing.assert_close(loaded(*args).frame_score, eager.frame_score)


def test_export_seals_what_it_writes(tiny_model_dir: Path) -> None:
    meta = json.loads((tiny_model_dir / "metadata.json").read_text())
    assert list(meta["files"]) == ["model.pt"] and len(meta["signature"]) == 71
    (tiny_model_dir / "metadata.json").write_text(json.dumps({**meta, "fps": 12.5}))
    with pytest.raises(ModelError, match="signature: does not match"):
        runtime.load(tiny_model_dir, "cpu")
    sign(tiny_model_dir)  # fps is not baked into the module: re-sealed, it loads
    assert runtime.load(tiny_model_dir, "cpu").metadata["fps"] == 12.5
