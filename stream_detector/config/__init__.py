"""Configuration, read by every other stage: frozen dataclasses validated in one place, loaded from
TOML with unknown keys rejected; every error is one line naming the file and the dotted key.

  loading.py   reading TOML; building a dataclass from a table (unknown keys, types, ranges)
  references.py  values given by reference: ${NAME} from the environment, KEY_file from a file
  detector.py  DetectorConfig: how a model sees a scene and is fitted (`fit`, [detector])
  daemon.py    DaemonConfig: cameras, inference, mqtt, metrics, api, storage, logging; the default
  scene.py     ModelChoice: a camera's models and the rules that choose them (picture, hours)
  tuning.py    TuneConfig: the daemon tuning its models with operators' false alarms ([tune])
"""

from stream_detector.config.daemon import (
    CAMERA_NAME_CHARS,
    DEFAULT_MODEL,
    ApiConfig,
    CameraConfig,
    DaemonConfig,
    InferenceConfig,
    LoggingConfig,
    MetricsConfig,
    MqttConfig,
    StorageConfig,
    default_daemon_config,
    host_node_id,
    is_loopback,
    load_daemon_config,
    parse_daemon_config,
)
from stream_detector.config.detector import DetectorConfig, load_detector_config
from stream_detector.config.loading import shown
from stream_detector.config.references import Expanded
from stream_detector.config.scene import (
    PICTURES,
    Hours,
    ModelChoice,
    choose,
    explain,
    parse_hours,
    parse_time,
)
from stream_detector.config.tuning import TuneConfig

__all__ = [
    "CAMERA_NAME_CHARS",
    "DEFAULT_MODEL",
    "PICTURES",
    "ApiConfig",
    "CameraConfig",
    "DaemonConfig",
    "DetectorConfig",
    "Expanded",
    "Hours",
    "InferenceConfig",
    "LoggingConfig",
    "MetricsConfig",
    "ModelChoice",
    "MqttConfig",
    "StorageConfig",
    "TuneConfig",
    "choose",
    "default_daemon_config",
    "explain",
    "host_node_id",
    "is_loopback",
    "load_daemon_config",
    "load_detector_config",
    "parse_daemon_config",
    "parse_hours",
    "parse_time",
    "shown",
]
