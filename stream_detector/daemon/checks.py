"""The cameras' start-up check, after `environment.load_config`: the device exists, each camera's
model loads and fits what the camera sends it; the errors name the file and the key. And
`check-config --probe`: a frame read from each camera and fitted to its model.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

from stream_detector.capture import probe, scored_config
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


def probe_cameras(cfg: DaemonConfig, models: dict[ModelKey, LoadedModel],
                  timeout: float) -> Iterator[tuple[str, tuple[int, int] | SourceError]]:
    """Each camera's scored stream opened once, a frame read within `timeout` seconds and fitted to
    the camera's model: (camera, (width, height)), or (camera, why not), camera by camera."""
    for name, cam in cfg.cameras.items():
        try:
            width, height = probe(scored_config(cam), name, timeout)  # the stream its model must fit
            model = models[model_key(cam, cfg.device)]
            model.check_source(width, height, f"{width}x{height} frames")
        except SourceError as exc:
            yield name, exc
        else:
            yield name, (width, height)


def probe_failed(cfg: DaemonConfig, failed: list[tuple[str, SourceError]]) -> ConfigError:
    """The one line for probes that failed: the first camera's key and reason, and how many more."""
    name, exc = failed[0]
    more = f" ({len(failed) - 1} more camera(s) failed, see above)" if len(failed) > 1 else ""
    key = "detect_source" if cfg.cameras[name].detect_source else "source"  # what is scored
    return ConfigError(f"{cfg.path}: cameras.{name}.{key}: probe failed: {exc}{more}")
