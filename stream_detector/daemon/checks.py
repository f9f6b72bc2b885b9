"""The cameras' start-up check, after `environment.load_config`: the device exists, each camera's
model loads and fits what the camera sends it; the errors name the file and the key. And
`check-config --probe`: a frame read from each camera and fitted to its models; which is active.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from pathlib import Path
from typing import NamedTuple

from stream_detector.capture import probe_frame, scored_config
from stream_detector.config import CameraConfig, DaemonConfig, ModelChoice, explain
from stream_detector.detect import measure, picture_of
from stream_detector.errors import ConfigError, ModelError, SourceError
from stream_detector.model import LoadedModel, load, pick_device

ModelKey = tuple[str, str]  # (model directory, device): cameras that share it share one model
# What a camera's capture thread prepares for its model (detect.FramePreparer) and the rate it keeps:
# every model of one camera must agree on them, since frames are prepared before one is chosen.
PREPARATION = ("working_size", "color", "motion")


def check_cameras(cfg: DaemonConfig, device: str, precision: str) -> dict[ModelKey, LoadedModel]:
    """The one check of the cameras for run, SIGHUP reload and check-config: the device exists,
    every camera's models load (each directory once, read afresh: it may have been re-fitted), can
    score the size the camera resizes its frames to, and prepare frames alike. Returns the models
    by (directory, device); `camera_models` picks a camera's."""
    check_device(device, cfg.path)
    models: dict[ModelKey, LoadedModel] = {}
    for name, cam in cfg.cameras.items():
        for key, choice in model_keys(name, cam):
            if (choice.model, device) not in models:
                models[(choice.model, device)] = load_camera_model(key, choice.model, device,
                                                                   cfg.path, precision)
            check_camera_model(name, cam, models[(choice.model, device)], cfg.path)
        check_preparation(cam, [(key, models[(c.model, device)]) for key, c in model_keys(name, cam)],
                          cfg.path)
    return models


def model_keys(name: str, cam: CameraConfig) -> list[tuple[str, ModelChoice]]:
    """The camera's models with the config key each comes from, for messages."""
    if not cam.models:
        return [(f"cameras.{name}.model", cam.model_choices[0])]
    return [(f"cameras.{name}.models[{i}].model", c) for i, c in enumerate(cam.models)]


def camera_models(cam: CameraConfig, models: dict[ModelKey, LoadedModel],
                  device: str) -> dict[str, LoadedModel]:
    """A camera's loaded models by name, in the config's order."""
    return {c.name: models[(c.model, device)] for c in cam.model_choices}


def check_device(device: str, where: str) -> None:
    """Fail fast, naming the key, when the configured device does not exist here (cuda, no GPU)."""
    try:
        pick_device(device)
    except ModelError as exc:
        raise ConfigError(f"{where}: device: {exc}") from None


def load_camera_model(key: str, directory: str, device: str, where: str,
                      precision: str = "auto") -> LoadedModel:
    """A camera's model directory loaded; errors name the file and `key` (cameras.NAME.model)."""
    try:
        return load(Path(directory), device, precision)
    except ModelError as exc:
        raise ModelError(f"{where}: {key}: {exc}") from None


def check_camera_model(name: str, cam: CameraConfig, model: LoadedModel, where: str) -> None:
    """A camera that resizes its frames must resize them to a size its model can score."""
    if cam.width:
        try:
            model.check_source(cam.width, cam.height, "resize target")
        except SourceError as exc:
            raise ConfigError(f"{where}: cameras.{name}.width: {exc}") from None


def check_preparation(cam: CameraConfig, models: list[tuple[str, LoadedModel]], where: str) -> None:
    """A camera's models must want the same frames: same working size, colour and motion, and the
    same rate unless the camera sets fps_limit."""
    _, first = models[0]
    fields = PREPARATION + (() if cam.fps_limit is not None else ("fps",))
    for key, model in models[1:]:
        for field in fields:
            mine, theirs = model.metadata.get(field), first.metadata.get(field)
            if mine != theirs:
                hint = " or set the camera's fps_limit" if field == "fps" else ""
                raise ConfigError(f"{where}: {key}: {model.path} has {field} {mine}, {first.path} "
                                  f"{theirs}: a camera's models must prepare frames alike (fit them "
                                  f"with the same [detector] settings{hint})")


class Probed(NamedTuple):
    width: int
    height: int
    picture: str | None  # "grey" or "colour" (what a camera's model rules see), None if unclear


def probe_cameras(cfg: DaemonConfig, models: dict[ModelKey, LoadedModel],
                  timeout: float) -> Iterator[tuple[str, Probed | SourceError]]:
    """Each camera's scored stream opened once, a frame read within `timeout` seconds and fitted to
    the camera's models: (camera, Probed), or (camera, why not), camera by camera."""
    for name, cam in cfg.cameras.items():
        try:
            image = probe_frame(scored_config(cam), name, timeout)  # the stream its model must fit
            height, width = image.shape[:2]
            for model in camera_models(cam, models, cfg.device).values():
                model.check_source(width, height, f"{width}x{height} frames")
        except SourceError as exc:
            yield name, exc
        else:
            yield name, Probed(width, height, picture_of(measure(image).colour))


def active_models(cfg: DaemonConfig, pictures: dict[str, str | None]) -> list[str]:
    """For each camera with several models, which would be active now and why (check-config);
    `pictures`: what --probe measured (grey, colour), by camera."""
    now = dt.datetime.now().time()
    return [f"camera {name}: active model now: {explain(cam.model_choices, pictures.get(name), now)}"
            for name, cam in cfg.cameras.items() if len(cam.model_choices) > 1]


def probe_failed(cfg: DaemonConfig, failed: list[tuple[str, SourceError]]) -> ConfigError:
    """The one line for probes that failed: the first camera's key and reason, and how many more."""
    name, exc = failed[0]
    more = f" ({len(failed) - 1} more camera(s) failed, see above)" if len(failed) > 1 else ""
    key = "detect_source" if cfg.cameras[name].detect_source else "source"  # what is scored
    return ConfigError(f"{cfg.path}: cameras.{name}.{key}: probe failed: {exc}{more}")
