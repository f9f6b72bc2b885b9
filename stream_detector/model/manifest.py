"""A model directory as one sealed unit: the manifest (every file's hash) and the metadata schema.

`sign` lists every file of the directory in metadata.json and seals the whole metadata with the
hash of its canonical JSON, so an edited threshold is refused like a truncated model.pt. It is an
integrity seal against accidents and stale copies, not an authenticity check: anyone may re-sign.
`validate_metadata` checks types and ranges before anything runs; `check_module` checks that the
values baked into the TorchScript module agree with the JSON.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from stream_detector.errors import ModelError
from stream_detector.model.detector import CUES
from stream_detector.model.export import METADATA_FILE, MODEL_FILE, sha256_of

SIGNATURE_KEY = "signature"
SIGNATURE_PREFIX = "sha256:"
CALIBRATION_KEYS = ("a", "beta", "floor", "fps")  # in the order of the module's `calibration` buffer


def canonical_digest(meta: Mapping[str, Any]) -> str:
    """Hash of the metadata without its signature, as sorted compact JSON (NaN is not JSON)."""
    body = {k: v for k, v in meta.items() if k != SIGNATURE_KEY}
    text = json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=True, allow_nan=False)
    return hashlib.sha256(text.encode("ascii")).hexdigest()


def sign(model_dir: Path) -> Path:
    """Record every file of `model_dir` (but metadata.json) in its metadata and seal the metadata."""
    model_dir = Path(model_dir)
    meta_path = model_dir / METADATA_FILE
    try:
        meta = json.loads(meta_path.read_text())
    except (OSError, ValueError, RecursionError) as exc:
        raise ModelError(f"{meta_path}: cannot sign: unreadable metadata ({type(exc).__name__})") from None
    if not isinstance(meta, dict):
        raise ModelError(f"{meta_path}: cannot sign: not a JSON object")
    meta["files"] = {p.name: {"sha256": sha256_of(p), "bytes": p.stat().st_size}
                     for p in sorted(model_dir.iterdir()) if p.name != METADATA_FILE and p.is_file()}
    bad = _non_finite(meta, "")
    if bad:
        raise ModelError(f"{meta_path}: {bad}: NaN and Infinity are not allowed; not signed")
    meta[SIGNATURE_KEY] = SIGNATURE_PREFIX + canonical_digest(meta)
    tmp = model_dir / (METADATA_FILE + ".tmp")
    tmp.write_text(json.dumps(meta, indent=2) + "\n")
    os.replace(tmp, meta_path)
    return model_dir


def verify(model_dir: Path, meta: Mapping[str, Any]) -> None:
    """The seal matches the metadata, and the directory holds exactly the listed files, unchanged."""
    meta_path = model_dir / METADATA_FILE
    try:
        digest = canonical_digest(meta)
    except ValueError:
        raise ModelError(f"{meta_path}: holds NaN or Infinity, which JSON does not allow") from None
    if digest != str(meta[SIGNATURE_KEY]).removeprefix(SIGNATURE_PREFIX):
        raise ModelError(f"{meta_path}: {SIGNATURE_KEY}: does not match the metadata (edited after "
                         f"export? re-fit, or re-sign with `stream-detector sign {model_dir}`)")
    files = meta["files"]
    for entry in sorted(model_dir.iterdir()):
        if entry.name != METADATA_FILE and entry.name not in files:
            raise ModelError(f"{meta_path}: files: {entry.name} is in the directory but not in the "
                             f"manifest (remove it, or re-sign the directory)")
    for name, info in sorted(files.items()):
        path = model_dir / name
        if not path.is_file():
            raise ModelError(f"{meta_path}: files.{name}: {path} is missing")
        if path.stat().st_size != info["bytes"] or sha256_of(path) != info["sha256"]:
            raise ModelError(f"{path}: checksum does not match metadata files.{name} "
                             f"(truncated or replaced file)")


# --- the schema -----------------------------------------------------------------------------------

Check = Callable[[Any, Mapping[str, Any]], "str | None"]  # (value, whole metadata) -> why, or None


def _int_in(lo: int, hi: int) -> Check:
    def check(v: Any, _: Mapping[str, Any]) -> str | None:
        if not _is_int(v) or not lo <= v <= hi:
            return f"must be an integer in {lo}..{hi}, got {_show(v)}"
        return None
    return check


def _number_in(lo: float, hi: float, low_open: bool = False) -> Check:
    def check(v: Any, _: Mapping[str, Any]) -> str | None:
        if not _is_number(v) or not (lo < v if low_open else lo <= v) or not v <= hi:
            return f"must be a finite number in {'(' if low_open else '['}{lo:g}, {hi:g}], got {_show(v)}"
        return None
    return check


def _pair(lo: int, hi: int) -> Check:
    def check(v: Any, _: Mapping[str, Any]) -> str | None:
        if not isinstance(v, list) or len(v) != 2 or not all(_is_int(x) and lo <= x <= hi for x in v):
            return f"must be two integers in {lo}..{hi}, got {_show(v)}"
        return None
    return check


def _choice(*options: str) -> Check:
    def check(v: Any, _: Mapping[str, Any]) -> str | None:
        return None if v in options else f"must be one of {', '.join(options)}, got {_show(v)}"
    return check


def _cell(v: Any, meta: Mapping[str, Any]) -> str | None:
    if not _is_int(v) or not 4 <= v <= 128 or v % 4:
        return f"must be a multiple of 4 in 4..128, got {_show(v)}"
    size = meta.get("working_size")
    if _pair(32, 4096)(size, meta) is None and v > min(size):
        return f"{v} is larger than the working size {size[0]}x{size[1]}"
    return None


def _cell_stride(v: Any, meta: Mapping[str, Any]) -> str | None:
    cell = meta.get("cell")
    hi = cell if _is_int(cell) and cell > 0 else 128
    return _int_in(1, hi)(v, meta)


def _region(v: Any, meta: Mapping[str, Any]) -> str | None:
    grid = meta.get("grid")
    side = min(grid) if _pair(1, 4096)(grid, meta) is None else 4096
    return _int_in(1, max(1, min(16, side)))(v, meta)


CALIBRATION_RANGES: dict[str, Check] = {
    "a": _number_in(-1e3, 1e3), "beta": _number_in(0, 1e3, low_open=True),
    "floor": _number_in(-1e3, 1e3), "fps": _number_in(0, 1000, low_open=True),
}


def _calibration(v: Any, meta: Mapping[str, Any]) -> str | None:
    if not isinstance(v, dict):
        return f"must be a table with {', '.join(CALIBRATION_KEYS)}, got {_show(v)}"
    for key in CALIBRATION_KEYS:
        if key not in v:
            return f"{key}: required key missing"
        why = CALIBRATION_RANGES[key](v[key], meta)
        if why:
            return f"{key}: {why}"
    if "normal_hours" in v:
        why = _number_in(0, 1e6)(v["normal_hours"], meta)
        if why:
            return f"normal_hours: {why}"
    return None


def _files(v: Any, _: Mapping[str, Any]) -> str | None:
    if not isinstance(v, dict) or not v:
        return f"must be a non-empty table of file name -> {{sha256, bytes}}, got {_show(v)}"
    if MODEL_FILE not in v:
        return f"must list {MODEL_FILE}"
    for name, info in v.items():
        if not name or name in (".", "..") or "/" in name or "\\" in name or name == METADATA_FILE:
            return f"{name!r} is not a plain file name in the model directory"
        if (not isinstance(info, dict) or not isinstance(info.get("sha256"), str)
                or len(info["sha256"]) != 64 or not _is_hex(info["sha256"])
                or not _is_int(info.get("bytes")) or info["bytes"] < 0):
            return f"{name}: must be {{sha256 = 64 hex digits, bytes = integer >= 0}}"
    return None


def _signature(v: Any, _: Mapping[str, Any]) -> str | None:
    if not isinstance(v, str) or not v.startswith(SIGNATURE_PREFIX) or len(v) != 71 or not _is_hex(v[7:]):
        return f"must be '{SIGNATURE_PREFIX}' and 64 hex digits (sign the directory), got {_show(v)}"
    return None


def _bool(v: Any, _: Mapping[str, Any]) -> str | None:
    return None if isinstance(v, bool) else f"must be true or false, got {_show(v)}"


PRETEXTS = ("predict", "reconstruct", "motion")  # what the loader knows how to call


def _cue_weights(v: Any, meta: Mapping[str, Any]) -> str | None:
    n = len(CUES)
    if (not isinstance(v, list) or len(v) != n or not all(_number_in(0, 100)(x, meta) is None for x in v)
            or not sum(v) > 0):
        return f"must be {n} numbers in 0..100, not all 0, got {_show(v)}"
    return None

# Checked in this order, so a range that depends on another key (cell_stride <= cell) sees it valid.
# Extend REQUIRED for keys every model must carry, OPTIONAL for keys checked only when present.
# Keys in neither are allowed and ignored here (training details, or settings newer code adds).
SCHEMA: dict[str, Check] = {
    "working_size": _pair(32, 4096), "window": _int_in(3, 32), "cell": _cell,
    "cell_stride": _cell_stride, "grid": _pair(1, 4096), "pretext": _choice(*PRETEXTS),
    "smoothing": _number_in(0, 1, low_open=True), "fps": _number_in(0, 1000, low_open=True),
    "calibration": _calibration, "files": _files, SIGNATURE_KEY: _signature,
    "region": _region, "color": _bool, "motion": _bool, "scene": _bool, "cue_weights": _cue_weights,
}
REQUIRED = ("working_size", "window", "cell", "cell_stride", "grid", "pretext", "smoothing", "fps",
            "calibration", "files", SIGNATURE_KEY)
OPTIONAL = ("region", "color", "motion", "scene", "cue_weights")


def validate_metadata(meta: Any, path: Path | str) -> dict[str, Any]:
    """Refuse metadata with a missing key, a wrong type or a value out of range; returns it."""
    if not isinstance(meta, dict):
        raise ModelError(f"{path}: expected a JSON object, got {_show(meta)}")
    missing = [k for k in REQUIRED if k not in meta]
    if missing:
        raise ModelError(f"{path}: {missing[0]}: required key missing")
    for key in (*REQUIRED, *OPTIONAL):
        if key in meta:
            why = SCHEMA[key](meta[key], meta)
            if why:
                raise ModelError(f"{path}: {key}: {why}")
    bad = _non_finite(meta, "")
    if bad:
        raise ModelError(f"{path}: {bad}: NaN and Infinity are not allowed")
    return meta


def _non_finite(value: Any, where: str) -> str | None:
    """The dotted key of the first NaN or infinite number anywhere in `value`, if any."""
    if isinstance(value, float) and not math.isfinite(value):
        return where or "(top level)"
    items = value.items() if isinstance(value, dict) else enumerate(value) if isinstance(value, list) else ()
    for k, v in items:
        found = _non_finite(v, f"{where}.{k}" if where and isinstance(k, str) else
                            f"{where}[{k}]" if where else str(k))
        if found:
            return found
    return None


def check_module(module: Any, meta: Mapping[str, Any], path: Path | str) -> None:
    """The module's baked-in values (baseline, calibration, region) must be the ones in the JSON."""
    import torch

    grid = tuple(meta["grid"])
    for name in ("center", "scale"):
        buf = getattr(module, name, None)
        if not isinstance(buf, torch.Tensor) or tuple(buf.shape[-2:]) != grid:  # one grid per cue
            shape = tuple(buf.shape) if isinstance(buf, torch.Tensor) else None
            raise ModelError(f"{path}: {name}: baseline shape {shape} does not match metadata grid {grid}")
        if not bool(torch.isfinite(buf).all()):
            raise ModelError(f"{path}: {name}: baseline holds non-finite values")
    if not bool((module.scale > 0).all()):
        raise ModelError(f"{path}: scale: baseline scale must be > 0 in every cell")
    cal = getattr(module, "calibration", None)
    if isinstance(cal, torch.Tensor):
        values = [float(x) for x in cal.flatten()]
        if len(values) < len(CALIBRATION_KEYS):
            raise ModelError(f"{path}: calibration: module holds {len(values)} values, expected at least "
                             f"{len(CALIBRATION_KEYS)} ({', '.join(CALIBRATION_KEYS)})")
        for key, inside in zip(CALIBRATION_KEYS, values):
            outside = float(meta["calibration"][key])
            if not math.isclose(inside, outside, rel_tol=1e-5, abs_tol=1e-6):  # float32 vs JSON
                raise ModelError(f"{path}: calibration.{key}: metadata.json says {outside:g}, the "
                                 f"module holds {inside:g}")
    weights = getattr(module, "weights", None)
    if isinstance(weights, torch.Tensor) and "cue_weights" in meta:
        inside_w = [float(x) for x in weights.flatten()]
        if len(inside_w) != len(meta["cue_weights"]) or not all(
                math.isclose(a, float(b), rel_tol=1e-5, abs_tol=1e-6) for a, b in zip(inside_w, meta["cue_weights"])):
            raise ModelError(f"{path}: cue_weights: metadata.json says {meta['cue_weights']}, the module "
                             f"holds {inside_w}")
    motion = getattr(module, "motion_channels", None)
    if motion is not None and "motion" in meta and bool(int(motion)) != meta["motion"]:
        raise ModelError(f"{path}: motion: metadata.json says {meta['motion']}, the module "
                         f"{'takes' if int(motion) else 'does not take'} motion channels")
    scene = getattr(module, "scene_channels", None)
    if scene is not None and "scene" in meta and bool(int(scene)) != meta["scene"]:
        raise ModelError(f"{path}: scene: metadata.json says {meta['scene']}, the module "
                         f"{'takes' if int(scene) else 'does not take'} scene channels")
    if hasattr(module, "region") and "region" in meta and int(module.region) != meta["region"]:
        raise ModelError(f"{path}: region: metadata.json says {meta['region']}, the module holds "
                         f"{int(module.region)}")


def _is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _is_number(v: Any) -> bool:
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        return False
    return isinstance(v, int) or math.isfinite(v)  # math.isfinite overflows on huge ints


def _is_hex(text: str) -> bool:
    return all(c in "0123456789abcdef" for c in text)


def _show(v: Any) -> str:
    """A short one-line rendering of a bad value for messages."""
    try:
        text = repr(v).replace("\n", " ")
    except (ValueError, RecursionError):  # an integer of thousands of digits, a deep nesting
        return f"a {type(v).__name__}"
    return text if len(text) <= 40 else text[:37] + "..."
