"""The cameras' start-up check, after `environment.load_config`: the device exists, each camera's
model loads and fits what the camera sends it; the errors name the file and the key.
"""

from __future__ import annotations

from pathlib import Path

from stream_detector.config import DEFAULT_MODEL, CameraConfig, DaemonConfig
from stream_detector.errors import ConfigError, ModelError, SourceError
from stream_detector.model import LoadedModel, load, pick_device

ModelKey = tuple[str, str]  # (model directory, device): cameras that share it share one model


def check_cameras(cfg: DaemonConfig, device: str, precision: str) -> dict[ModelKey, LoadedModel]:
    """The one check of the cameras for run, SIGHUP reload and check-config: the device exists,
    every camera's model loads (each directory once, read afresh: it may have been re-fitted) and
    can score the size the camera resizes its frames to. Returns the models by `model_key`."""
    check_device(device, cfg.path)
    models: dict[ModelKey, LoadedModel] = {}
    for name, cam in cfg.cameras.items():
        key = model_key(cam, device)
        if key not in models:
            models[key] = load_camera_model(name, cam, device, cfg.path, precision)
        check_camera_model(name, cam, models[key], cfg.path)
    return models


def model_key(cam: CameraConfig, device: str) -> ModelKey:
    return (cam.model or str(DEFAULT_MODEL), device)


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
