"""The daemon: wires the stages into threads, starts them (cameras last), supervises them (a dead
capture thread is restarted; systemd's watchdog and /healthz see the critical threads' heartbeats),
applies reloads camera by camera, and stops them, flushing every event.

  lifecycle.py       run: the daemon as a process (signals, systemd, supervision, reloads)
  app.py             Daemon: start, supervise, reload, stop
  cameras.py         CameraRuntime: a running camera; its capture loop's reports as metrics
  environment.py     load_config: a config's values, then what it needs from this machine
  checks.py          check_cameras: the device, the cameras' models, what their frames must fit
  health.py          heartbeats; systemd's notify protocol
  metrics.py         Metrics: every series, on an injected registry
  tuning.py          Tuner: the models tuned with operators' false alarms on a schedule ([tune])
  endpoints.py       health_routes: /metrics, /healthz, /readyz for the web server

Names from modules that import torch (app.py, checks.py, lifecycle.py: seconds to import) are
loaded when first used, so a bad config is reported before torch is loaded.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from stream_detector.daemon.endpoints import health_routes
from stream_detector.daemon.environment import check_environment, load_config, secret_warnings
from stream_detector.daemon.health import Heartbeats, notify_systemd
from stream_detector.daemon.metrics import Metrics
from stream_detector.daemon.tuning import Tuner, tuned_config, tuned_models

if TYPE_CHECKING:
    from stream_detector.daemon.app import Daemon
    from stream_detector.daemon.checks import (
        check_cameras,
        camera_models,
        load_camera_model,
        probe_cameras,
        probe_failed,
    )
    from stream_detector.daemon.lifecycle import run

__all__ = [
    "Daemon",
    "Heartbeats",
    "Metrics",
    "Tuner",
    "active_models",
    "camera_models",
    "check_cameras",
    "check_environment",
    "health_routes",
    "load_camera_model",
    "load_config",
    "notify_systemd",
    "probe_cameras",
    "probe_failed",
    "run",
    "secret_warnings",
    "tuned_config",
    "tuned_models",
]

_WITH_TORCH = {"Daemon": "app", "active_models": "checks", "check_cameras": "checks",
               "load_camera_model": "checks",
               "camera_models": "checks", "probe_cameras": "checks", "probe_failed": "checks",
               "run": "lifecycle"}


def __getattr__(name: str) -> Any:
    if name in _WITH_TORCH:
        return getattr(importlib.import_module(f"{__name__}.{_WITH_TORCH[name]}"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
