"""The model: the spacetime network and everything that travels with it, from geometry to the
sealed directory the daemon loads.

  network.py   the pure nn.Module; how the model is called (windows of cached features)
  detector.py  the exported module: cues, baselines, the frame score of the most anomalous region
  slicer.py    window and cell geometry: time slices, space slices, cells to pixel boxes
  bank.py      the feature bank: each stream's recent frames and cached features, for joint calls
  export.py    writing a model directory: TorchScript + metadata.json
  manifest.py  the sealed directory: file hashes, signature, metadata schema, module checks
  runtime.py   loading and checking a directory, the device and precision; torch's threads and heap
"""

from stream_detector.model.bank import CALL_FRAMES, STREAM_FRAMES, FeatureBank
from stream_detector.model.export import METADATA_FILE, MODEL_FILE, export
from stream_detector.model.manifest import REQUIRED, sign, validate_metadata, verify
from stream_detector.model.detector import CUES, LEARNED, STATIC, SpacetimeDetector
from stream_detector.model.network import SpacetimeNet, context_offsets, gather_window
from stream_detector.model.runtime import (
    LoadedModel,
    configure_torch,
    load,
    pick_device,
    read_metadata,
    threshold_for,
)
from stream_detector.model.slicer import SpacetimeSlicer

__all__ = [
    "CALL_FRAMES",
    "CUES",
    "LEARNED",
    "METADATA_FILE",
    "MODEL_FILE",
    "REQUIRED",
    "STATIC",
    "STREAM_FRAMES",
    "FeatureBank",
    "LoadedModel",
    "SpacetimeDetector",
    "SpacetimeNet",
    "SpacetimeSlicer",
    "configure_torch",
    "context_offsets",
    "export",
    "gather_window",
    "load",
    "pick_device",
    "read_metadata",
    "sign",
    "threshold_for",
    "validate_metadata",
    "verify",
]
