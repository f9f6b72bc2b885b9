"""Loading a model directory for scoring: checks metadata, manifest and shapes, then picks a device;
and how a process runs its model calls (torch's threads, glibc's heap).

Only TorchScript and JSON are read; nothing is unpickled.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import json
import math
import os
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from stream_detector.config import InferenceConfig
from stream_detector.errors import ModelError, SourceError
from stream_detector.model.bank import FeatureBank
from stream_detector.model.export import (
    FORMAT,
    FORMAT_VERSION,
    METADATA_FILE,
    MODEL_FILE,
    probe_input,
)
from stream_detector.model.manifest import check_module, validate_metadata, verify
from stream_detector.model.slicer import SpacetimeSlicer


@dataclass(frozen=True)
class LoadedModel:
    module: torch.jit.ScriptModule
    metadata: dict[str, Any]
    device: torch.device
    slicer: SpacetimeSlicer
    path: Path
    precision: str = "fp32"  # of the network's weights: fp16 or fp32 (errors and scores: always fp32)
    # The recent frames and features of every camera scored with this model: one call scores them all.
    bank: FeatureBank = field(default_factory=lambda: FeatureBank(0), compare=False, repr=False)

    @property
    def smoothing(self) -> float:
        return float(self.metadata["smoothing"])

    def threshold(self, false_alarms_per_hour: float) -> float:
        return threshold_for(self.metadata["calibration"], false_alarms_per_hour)

    def check_source(self, width: int, height: int, name: str) -> None:
        """Refuse a source whose aspect differs from the training footage's by more than 10%."""
        w, h = self.metadata["working_size"]
        if abs((width / height) / (w / h) - 1) > 0.10:
            raise SourceError(f"{name}: resolution {width}x{height} does not fit model {self.path} "
                              f"(trained at aspect {w}:{h}; fit a model for this camera)")


def threshold_for(calibration: dict[str, Any], false_alarms_per_hour: float) -> float:
    """Score threshold expected to give `false_alarms_per_hour` alarms on normal footage.

    The calibration fitted log(alarm onsets per hour above u) = a - u / beta on normal footage.
    When that footage is too short to observe the target rate (under 1/rate hours), the threshold is
    also kept at or above `floor`, the highest smoothed score seen on it.
    """
    if false_alarms_per_hour <= 0:
        raise ValueError("false_alarms_per_hour must be > 0")
    u = calibration["beta"] * (calibration["a"] - math.log(false_alarms_per_hour))
    if false_alarms_per_hour * calibration.get("normal_hours", 0.0) < 1.0:
        u = max(u, calibration["floor"])
    return float(u)


def pick_device(name: str) -> torch.device:
    """'auto' -> CUDA when present, else CPU; 'cuda' without a GPU is a ModelError."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise ModelError("device 'cuda' requested but no CUDA device is available")
    if name not in ("cpu", "cuda"):
        raise ModelError(f"device {name!r}: expected auto, cpu or cuda")
    return torch.device(name)


def torch_threads(cfg: InferenceConfig, cores: int) -> int:
    """Threads for torch's kernels: as configured, else about half the cores (1 on a 2-core host).

    The inference thread's model calls then leave the other cores to the capture threads (decode,
    preprocessing, motion: OpenCV and FFmpeg release the GIL), instead of every thread fighting for
    every core; torch's thread pool degrades sharply when its threads are preempted."""
    return cfg.torch_threads or max(1, min(4, cores // 2))


def keep_tensors_in_the_heap() -> bool:
    """Ask glibc to serve allocations up to 32 MB from its heap and to keep 128 MB of freed heap.

    A model call over many cameras allocates intermediate tensors of several MB; by default glibc
    maps each from the kernel and unmaps it on free, so every call pays page faults on fresh memory:
    measured 5.0 ms a frame for calls of 16 cameras against 2.2 ms with this (one torch thread,
    2-core VM). Returns False where the C library has no mallopt (not glibc): nothing changes."""
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return False
    m_trim_threshold, m_mmap_threshold = -1, -3
    return bool(mallopt(m_mmap_threshold, 32 << 20)) and bool(mallopt(m_trim_threshold, 128 << 20))


def configure_torch(cfg: InferenceConfig) -> int:
    """The daemon's process-wide torch settings, made once (by `bench` too, so its figures are the
    daemon's): model-call tensors in glibc's heap, `torch_threads` threads. Returns that count."""
    keep_tensors_in_the_heap()
    threads = torch_threads(cfg, os.cpu_count() or 1)
    torch.set_num_threads(threads)
    return threads


def read_metadata(model_dir: Path) -> dict[str, Any]:
    if not model_dir.is_dir():
        raise ModelError(f"{model_dir}: model directory not found")
    meta_path = model_dir / METADATA_FILE
    try:
        meta = json.loads(meta_path.read_text())
    except FileNotFoundError:
        raise ModelError(f"{model_dir}: no {METADATA_FILE} (not a model directory?)") from None
    except (OSError, ValueError, RecursionError) as exc:  # ValueError: bad JSON or UTF-8
        reason = (str(exc).splitlines() or [type(exc).__name__])[0]
        raise ModelError(f"{meta_path}: unreadable metadata ({reason})") from None
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        raise ModelError(f"{meta_path}: not a stream-detector model (format field missing)")
    if meta.get("format_version") != FORMAT_VERSION:
        raise ModelError(f"{meta_path}: format_version {meta.get('format_version')!r} is not supported "
                         f"(this build reads {FORMAT_VERSION})")
    return validate_metadata(meta, meta_path)


def pick_precision(precision: str, device: torch.device, module: Any, path: Path) -> str:
    """'auto' -> fp16 on CUDA for modules that allow it (twice the throughput of float32 on tensor
    cores), else fp32; 'fp16' asks for it anywhere (CPU too: slower, but it is how tests check it)."""
    if precision not in ("auto", "fp16", "fp32"):
        raise ModelError(f"precision {precision!r}: expected auto, fp16 or fp32")
    ready = bool(getattr(module, "half_ready", False))
    if precision == "fp16" and not ready:
        raise ModelError(f"{path}: precision fp16: this model was exported before half precision was "
                         f"supported (fit it again)")
    half = precision == "fp16" or (precision == "auto" and ready and device.type == "cuda")
    return "fp16" if half else "fp32"


def load(model_dir: Path, device: str = "auto", precision: str = "auto") -> LoadedModel:
    """Load and verify a model directory; every problem is a one-line ModelError."""
    model_dir = Path(model_dir)
    meta = read_metadata(model_dir)
    model_path = model_dir / MODEL_FILE
    if not model_path.is_file():
        raise ModelError(f"{model_dir}: {MODEL_FILE} is missing")
    verify(model_dir, meta)
    dev = pick_device(device)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)
            module = torch.jit.load(str(model_path), map_location=dev)
    except (RuntimeError, ValueError) as exc:
        reason = (str(exc).splitlines() or [type(exc).__name__])[0].split(". ")[0]
        raise ModelError(f"{model_path}: not a loadable TorchScript file ({reason})") from None
    module.eval()
    check_module(module, meta, model_path)
    chosen = pick_precision(precision, dev, module, model_path)
    if chosen == "fp16":
        module.net.half()  # the network only: baselines, cues and scores stay float32
    width, height = meta["working_size"]
    slicer = SpacetimeSlicer(width, height, meta["window"], meta["cell"], meta["cell_stride"])
    _check_shapes(module, meta, slicer, model_path, dev)
    return LoadedModel(module, meta, dev, slicer, model_dir, chosen,
                       FeatureBank(slicer.window - 1))


@torch.no_grad()
def _check_shapes(module: Any, meta: dict[str, Any], slicer: SpacetimeSlicer, path: Path,
                  device: torch.device) -> None:
    rows, cols = slicer.grid
    if list(meta["grid"]) != [rows, cols] or tuple(module.center.shape[-2:]) != (rows, cols):
        raise ModelError(f"{path}: baseline grid {tuple(module.center.shape)} does not match metadata "
                         f"grid {tuple(meta['grid'])} for {slicer.width}x{slicer.height}")
    try:
        out = module(*probe_input(module, meta, device, random=False))
    except RuntimeError as exc:
        raise ModelError(f"{path}: model does not accept its declared input "
                         f"({slicer.width}x{slicer.height}, window {slicer.window}): "
                         f"{str(exc).splitlines()[0]}") from None
    if tuple(out[2].shape) != (1, rows, cols):
        raise ModelError(f"{path}: model output grid {tuple(out[2].shape[1:])} != metadata {(rows, cols)}")
