"""The cameras' start-up checks: the device exists, each camera's model loads and fits what the
camera sends it; the errors name the file and the key.
"""

from __future__ import annotations

from pathlib import Path

from stream_detector.capture import DEMO_SOURCE, DEMO_VIDEO, source_kind
from stream_detector.config import DEFAULT_MODEL, CameraConfig
from stream_detector.errors import ConfigError, ModelError, SourceError
from stream_detector.model import LoadedModel, load, pick_device


def check_camera(name: str, cfg: CameraConfig, where: str) -> None:
    """Fail fast on what can never work: a local file that does not exist, the demo without its
    video (for `source` and, when set, `detect_source`)."""
    for key in ("source", "detect_source"):
        uri = getattr(cfg, key)
        if uri == DEMO_SOURCE:
            if not DEMO_VIDEO.is_file():
                raise ConfigError(f"{where}: cameras.{name}.{key}: demo video {DEMO_VIDEO} missing "
                                  f"(install Debian's opencv-doc)")
        elif uri and source_kind(uri) == "file" and not Path(uri).is_file():
            raise ConfigError(f"{where}: cameras.{name}.{key}: no such file {uri}")


def check_device(device: str, where: str) -> None:
    """Fail fast, naming the key, when the configured device does not exist here (cuda, no GPU)."""
    try:
        pick_device(device)
    except ModelError as exc:
        raise ConfigError(f"{where}: device: {exc}") from None


def load_camera_model(name: str, cfg: CameraConfig, device: str, where: str,
                      precision: str = "auto") -> LoadedModel:
    """The camera's model (the committed demo model when it names none); errors name file and key."""
    try:
        return load(Path(cfg.model) if cfg.model else DEFAULT_MODEL, device, precision)
    except ModelError as exc:
        raise ModelError(f"{where}: cameras.{name}.model: {exc}") from None


def check_camera_model(name: str, cam: CameraConfig, model: LoadedModel, where: str) -> None:
    """A camera that resizes its frames must resize them to a size its model can score."""
    if cam.width:
        try:
            model.check_source(cam.width, cam.height, "resize target")
        except SourceError as exc:
            raise ConfigError(f"{where}: cameras.{name}.width: {exc}") from None
