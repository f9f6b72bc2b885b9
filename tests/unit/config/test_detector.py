from pathlib import Path

import pytest

from stream_detector.config import DetectorConfig, load_detector_config
from stream_detector.errors import ConfigError


def test_defaults_are_valid_and_auto_size_keeps_aspect() -> None:
    cfg = DetectorConfig()
    assert cfg.working_size(360, 240) == (192, 128)
    assert cfg.working_size(768, 576) == (192, 144)
    assert DetectorConfig(width=320, height=160).working_size(10, 10) == (320, 160)


@pytest.mark.parametrize(
    ("toml", "message"),
    [
        ("[detector]\nwindow = 1\n", "detector.window: must be in 3..32"),
        ("[detector]\nwindw = 8\n", "detector.windw: unknown key"),
        ("[detector]\nwindow = 'eight'\n", "detector.window: expected int"),
        ("[detector]\ncell = 10\n", "detector.cell: must be a multiple of 4"),
        ("[detector]\npretext = 'guess'\n", "detector.pretext: must be 'predict', 'reconstruct' or 'motion'"),
        ("[detector]\ncue_weights = [0.0, 0.5, 1.0]\n", "detector.cue_weights: expected 6 values, got 3"),
        ("[detector]\ndwell_floor = 0\n", "detector.dwell_floor: must be in (0, 3600]"),
        ("[detector]\noccupancy_floor = 2\n", "detector.occupancy_floor: must be in (0, 1]"),
        ("[detector]\nregion = 0\n", "detector.region: must be in 1..16"),
        ("[detector]\nbaseline_quantile = 1.0\n", "detector.baseline_quantile: must be in 0.5..1 (excluded)"),
        ("[detector]\nactive_share = 0\n", "detector.active_share: must be in (0, 1)"),
        ("[detector]\nrow_prior = -1\n", "detector.row_prior: must be in 0..1e6"),
        ("[detector]\ndwell_border = 9\n", "detector.dwell_border: must be in 0..8"),
        ("[detector]\nlearn_seconds = 0.1\n", "detector.learn_seconds: must be in 0.5..600"),
        ("[detector]\nadapt_seconds = 0\n", "detector.adapt_seconds: must be in 1..86400"),
        ("[detector]\nstill_seconds = 100\n", "detector.still_seconds: must be in 0.1..60"),
        ("[detector]\nscene = 'yes'\n", "detector.scene: expected bool"),
        ("[detector]\ntop_k = 16\n", "detector.top_k: unknown key"),
        ("[detector\n", "invalid TOML"),
    ],
)
def test_bad_detector_config_names_file_and_key(tmp_path: Path, toml: str, message: str) -> None:
    path = tmp_path / "bad.toml"
    path.write_text(toml)
    with pytest.raises(ConfigError) as err:
        load_detector_config(path)
    assert message in str(err.value) and str(path) in str(err.value)
    assert "\n" not in str(err.value)


def test_overrides_apply_and_missing_file_is_clear(tmp_path: Path) -> None:
    assert load_detector_config(None, {"epochs": 3, "window": None}).epochs == 3
    with pytest.raises(ConfigError, match="config file not found"):
        load_detector_config(tmp_path / "nope.toml")
