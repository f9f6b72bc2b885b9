"""Configuration: frozen dataclasses, validated in one place, loaded from TOML with unknown keys rejected.

Every error names the file and the dotted key, in one line.
"""

from __future__ import annotations

import dataclasses
import tomllib
import types
import typing
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from stream_detector.errors import ConfigError

T = TypeVar("T")


@dataclass(frozen=True)
class DetectorConfig:
    """How a model sees a scene and how it is fitted. Stored in the model's metadata."""

    width: int = 0  # working width in pixels; 0 = derive from the footage's aspect (long side 192)
    height: int = 0  # working height; 0 = derive
    long_side: int = 192  # used when width/height are 0: resolution vs. speed trade-off
    window: int = 8  # T: frames per window (T-1 context frames predict the last one)
    cell: int = 16  # space-slice size in working pixels
    cell_stride: int = 8  # step between space slices; < cell means overlapping slices
    channels: int = 32  # spatial-branch width
    temporal_channels: int = 16  # temporal-branch width
    pretext: str = "predict"  # "predict" the last frame from the others, or "reconstruct" it
    epochs: int = 12
    batch_size: int = 32
    learning_rate: float = 2e-3
    max_train_frames: int = 6000  # cap on frames held in memory for fitting
    baseline: str = "mean_std"  # per-cell error statistic: "mean_std" or "quantile" (median, q99)
    scale_floor: float = 0.25  # a cell's scale is at least this fraction of the median cell scale
    smoothing: float = 0.5  # causal EMA weight of the newest frame score (1.0 = no smoothing)
    top_k: int = 1  # frame score = mean of the k highest cell scores
    seed: int = 0

    def __post_init__(self) -> None:
        _check(self.width == 0 or self.width >= 32, "width", "must be 0 (auto) or >= 32")
        _check(self.height == 0 or self.height >= 32, "height", "must be 0 (auto) or >= 32")
        _check((self.width == 0) == (self.height == 0), "width", "set width and height together")
        _check(64 <= self.long_side <= 1024, "long_side", "must be in 64..1024")
        _check(3 <= self.window <= 32, "window", "must be in 3..32")
        _check(4 <= self.cell <= 128 and self.cell % 4 == 0, "cell", "must be a multiple of 4 in 4..128")
        _check(1 <= self.cell_stride <= self.cell, "cell_stride", "must be in 1..cell")
        _check(4 <= self.channels <= 256, "channels", "must be in 4..256")
        _check(4 <= self.temporal_channels <= 256, "temporal_channels", "must be in 4..256")
        _check(self.pretext in ("predict", "reconstruct"), "pretext", "must be 'predict' or 'reconstruct'")
        _check(0 <= self.epochs <= 10000, "epochs", "must be in 0..10000")
        _check(1 <= self.batch_size <= 4096, "batch_size", "must be in 1..4096")
        _check(0 < self.learning_rate < 1, "learning_rate", "must be in (0, 1)")
        _check(self.max_train_frames >= 16, "max_train_frames", "must be >= 16")
        _check(self.baseline in ("mean_std", "quantile"), "baseline", "must be 'mean_std' or 'quantile'")
        _check(0 <= self.scale_floor <= 1, "scale_floor", "must be in 0..1")
        _check(0 < self.smoothing <= 1, "smoothing", "must be in (0, 1]")
        _check(1 <= self.top_k <= 64, "top_k", "must be in 1..64")

    def working_size(self, source_width: int, source_height: int) -> tuple[int, int]:
        """(width, height) used for a source; auto sizes keep the aspect, multiples of 16."""
        if self.width:
            return self.width, self.height
        scale = self.long_side / max(source_width, source_height)
        def snap(v: float) -> int:
            return max(32, int(round(v / 16)) * 16)
        return snap(source_width * scale), snap(source_height * scale)


def _check(ok: bool, key: str, why: str) -> None:
    if not ok:
        raise ConfigError(f"{key}: {why}")


def from_mapping(cls: type[T], data: Any, where: str) -> T:
    """Build dataclass `cls` from a TOML table, rejecting unknown keys and wrong types.

    `where` is the dotted path used in messages ("file.toml: cameras.door.fps").
    """
    if not isinstance(data, dict):
        raise ConfigError(f"{where}: expected a table")
    fields = {f.name: f for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
    hints = typing.get_type_hints(cls)
    unknown = sorted(set(data) - set(fields))
    if unknown:
        raise ConfigError(f"{where}.{unknown[0]}: unknown key (allowed: {', '.join(sorted(fields))})")
    values = {}
    for name, value in data.items():
        values[name] = _coerce(value, hints[name], f"{where}.{name}")
    try:
        return cls(**values)
    except ConfigError as exc:
        raise ConfigError(f"{where}.{exc}") from None
    except TypeError as exc:  # a required field is missing
        raise ConfigError(f"{where}: {exc}") from None


def _coerce(value: Any, hint: Any, where: str) -> Any:
    origin = typing.get_origin(hint)
    if origin in (typing.Union, types.UnionType):
        options = [a for a in typing.get_args(hint) if a is not type(None)]
        if value is None:
            return None
        return _coerce(value, options[0], where)
    if dataclasses.is_dataclass(hint):
        return from_mapping(hint, value, where)  # type: ignore[arg-type]
    if origin in (tuple, list):
        if not isinstance(value, list):
            raise ConfigError(f"{where}: expected a list")
        args = typing.get_args(hint)
        inner = args[0] if args else Any
        items = [_coerce(v, inner, f"{where}[{i}]") for i, v in enumerate(value)]
        return tuple(items) if origin is tuple else items
    if hint is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"{where}: expected a number, got {value!r}")
        return float(value)
    if hint in (int, str, bool):
        if not isinstance(value, hint) or (hint is int and isinstance(value, bool)):
            raise ConfigError(f"{where}: expected {hint.__name__}, got {value!r}")
        return value
    return value


def read_toml(path: Path) -> dict[str, Any]:
    """Parse a TOML file; any I/O or syntax problem becomes a one-line ConfigError."""
    try:
        with open(path, "rb") as fh:
            return tomllib.load(fh)
    except FileNotFoundError:
        raise ConfigError(f"{path}: config file not found") from None
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read config ({exc.strerror})") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: invalid TOML ({exc})") from None


def load_detector_config(path: Path | None, overrides: dict[str, Any] | None = None) -> DetectorConfig:
    """Detector settings from an optional TOML file ([detector] table) plus command-line overrides."""
    data: dict[str, Any] = {}
    where = "detector"
    if path is not None:
        doc = read_toml(path)
        data = dict(doc.get("detector", {}))
        where = f"{path}: detector"
    data.update({k: v for k, v in (overrides or {}).items() if v is not None})
    return from_mapping(DetectorConfig, data, where)
