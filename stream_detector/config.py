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
    color: bool = False  # keep colour (3 channels) instead of grayscale: for scenes where hue matters
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
    baseline: str = "quantile"  # per-cell error statistic: "quantile" (median, q99) or "mean_std"
    scale_floor: float = 10.0  # a cell's scale is at least this multiple of the median cell scale
    baseline_blur: float = 2.5  # Gaussian sigma, in cells, shared between neighbouring baselines
    smoothing: float = 0.5  # causal EMA weight of the newest frame score (1.0 = no smoothing)
    top_k: int = 16  # frame score = mean of the k highest cell scores
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
        _check(0 <= self.scale_floor <= 1000, "scale_floor", "must be in 0..1000")
        _check(0 <= self.baseline_blur <= 10, "baseline_blur", "must be in 0..10")
        _check(0 < self.smoothing <= 1, "smoothing", "must be in (0, 1]")
        _check(1 <= self.top_k <= 64, "top_k", "must be in 1..64")

    def working_size(self, source_width: int, source_height: int) -> tuple[int, int]:
        """(width, height) used for a source; auto sizes keep the aspect, multiples of 8."""
        if self.width:
            return self.width, self.height
        scale = self.long_side / max(source_width, source_height)
        def snap(v: float) -> int:
            return max(32, int(round(v / 8)) * 8)
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
    missing = [n for n, f in fields.items() if n not in data and f.default is dataclasses.MISSING
               and f.default_factory is dataclasses.MISSING]
    if missing:
        raise ConfigError(f"{where}.{missing[0]}: required key missing")
    values = {}
    for name, value in data.items():
        values[name] = _coerce(value, hints[name], f"{where}.{name}")
    try:
        return cls(**values)
    except ConfigError as exc:
        raise ConfigError(f"{where}.{exc}") from None
    except TypeError as exc:  # a value the checks above let through; still one line, not a traceback
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


# --- The daemon's configuration (stream-detector run / check-config) ----------------------------


@dataclass(frozen=True)
class MqttConfig:
    host: str = "127.0.0.1"
    port: int = 1883
    topic_prefix: str = "stream-detector"
    client_id: str = ""  # empty: "stream-detector-<hostname>"
    username: str = ""
    password: str = ""
    qos: int = 1
    keepalive: int = 30
    tls_ca_file: str = ""  # set to enable TLS
    tls_cert_file: str = ""  # client certificate (optional, with tls_key_file)
    tls_key_file: str = ""
    tls_insecure: bool = False  # skip hostname check (self-signed lab brokers only)
    homeassistant_prefix: str = ""  # e.g. "homeassistant": publish discovery configs there
    score_interval: float = 1.0  # seconds between <prefix>/<camera>/score messages

    def __post_init__(self) -> None:
        _check(bool(self.host), "host", "must not be empty")
        _check(0 < self.port < 65536, "port", "must be in 1..65535")
        _check(bool(self.topic_prefix) and not any(c in self.topic_prefix for c in "#+"),
               "topic_prefix", "must be non-empty without '#' or '+'")
        _check(self.qos in (0, 1, 2), "qos", "must be 0, 1 or 2")
        _check(5 <= self.keepalive <= 3600, "keepalive", "must be in 5..3600")
        _check(bool(self.tls_cert_file) == bool(self.tls_key_file), "tls_cert_file",
               "set tls_cert_file and tls_key_file together")
        _check(self.score_interval >= 0, "score_interval", "must be >= 0")


@dataclass(frozen=True)
class MetricsConfig:
    host: str = "127.0.0.1"
    port: int = 9108  # 0 = pick a free port (logged); tests use it
    ready_after: float = 10.0  # /readyz fails if a camera has not scored a frame for this long

    def __post_init__(self) -> None:
        _check(0 <= self.port < 65536, "port", "must be in 0..65535")
        _check(self.ready_after > 0, "ready_after", "must be > 0")


@dataclass(frozen=True)
class StorageConfig:
    path: str = "var/stream-detector"  # events.sqlite and snapshots/ live here
    snapshots: bool = True
    keep_days: float = 30.0
    keep_mb: float = 1000.0  # events.sqlite plus snapshots/; the oldest go first; 0 = no limit

    def __post_init__(self) -> None:
        _check(bool(self.path), "path", "must not be empty")
        _check(self.keep_days > 0, "keep_days", "must be > 0")
        _check(self.keep_mb >= 0, "keep_mb", "must be >= 0 (0 = no limit)")


@dataclass(frozen=True)
class LoggingConfig:
    level: str = "info"

    def __post_init__(self) -> None:
        _check(self.level in ("debug", "info", "warning", "error"), "level",
               "must be debug, info, warning or error")


@dataclass(frozen=True)
class CameraConfig:
    source: str  # rtsp://, http(s)://, tcp://, udp://, a file path, or a USB device index ("0")
    model: str = ""  # model directory; empty = the committed demo model
    enabled: bool = True
    realtime: bool = True  # files: pace at their native frame rate (False: as fast as possible)
    loop: bool = False  # files: start again at the end
    fps_limit: float = 0.0  # 0 = every frame; else score at most this many frames per second
    width: int = 0  # resize frames to width x height right after decoding (0 = keep the source size)
    height: int = 0
    false_alarms_per_hour: float = 1.0  # threshold, as a target false alarm rate on normal footage
    min_duration: float = 0.5  # seconds over threshold before an event starts
    cooldown: float = 3.0  # seconds under the low threshold before it ends
    low_threshold_ratio: float = 0.8  # hysteresis: low threshold = ratio x threshold
    update_interval: float = 5.0  # seconds between event updates
    stale_after: float = 10.0  # seconds without a frame before the stream counts as lost
    queue_size: int = 16  # frames between capture and scoring; the oldest are dropped when full
    ignore: tuple[tuple[tuple[float, float], ...], ...] = ()  # polygons in source pixels [[x,y],...]
    snapshot: bool = True

    def __post_init__(self) -> None:
        _check(bool(self.source), "source", "must not be empty")
        _check(self.fps_limit >= 0, "fps_limit", "must be >= 0")
        _check((self.width == 0) == (self.height == 0), "width", "set width and height together")
        _check(self.width == 0 or (self.width >= 32 and self.height >= 32), "width",
               "width and height must be >= 32")
        _check(self.false_alarms_per_hour > 0, "false_alarms_per_hour", "must be > 0")
        _check(self.min_duration >= 0, "min_duration", "must be >= 0")
        _check(self.cooldown >= 0, "cooldown", "must be >= 0")
        _check(0 < self.low_threshold_ratio <= 1, "low_threshold_ratio", "must be in (0, 1]")
        _check(self.update_interval > 0, "update_interval", "must be > 0")
        _check(self.stale_after > 0, "stale_after", "must be > 0")
        _check(1 <= self.queue_size <= 1024, "queue_size", "must be in 1..1024")
        for i, poly in enumerate(self.ignore):
            _check(len(poly) >= 3, f"ignore[{i}]", "a polygon needs at least 3 points")


@dataclass(frozen=True)
class DaemonConfig:
    cameras: dict[str, CameraConfig]
    mqtt: MqttConfig | None = None  # None: events go to the store and stdout only
    metrics: MetricsConfig = MetricsConfig()
    storage: StorageConfig = StorageConfig()
    logging: LoggingConfig = LoggingConfig()
    device: str = "auto"  # auto | cpu | cuda
    path: str = ""  # the file it came from, for messages and SIGHUP reloads

    def __post_init__(self) -> None:
        _check(self.device in ("auto", "cpu", "cuda"), "device", "must be auto, cpu or cuda")
        _check(bool(self.cameras), "cameras", "configure at least one camera")


CAMERA_NAME_CHARS = set("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_-")


def parse_daemon_config(doc: dict[str, Any], where: str) -> DaemonConfig:
    """Validate a parsed TOML document; `where` (the file) prefixes every message."""
    allowed = {"mqtt", "metrics", "storage", "logging", "device", "cameras"}
    unknown = sorted(set(doc) - allowed)
    if unknown:
        raise ConfigError(f"{where}: {unknown[0]}: unknown key (allowed: {', '.join(sorted(allowed))})")
    cams = doc.get("cameras")
    if not isinstance(cams, dict) or not cams:
        raise ConfigError(f"{where}: cameras: configure at least one camera ([cameras.NAME] source = ...)")
    cameras = {}
    for name, table in cams.items():
        if not set(name) <= CAMERA_NAME_CHARS:
            raise ConfigError(f"{where}: cameras.{name}: camera names use letters, digits, '_' and '-' only")
        cameras[name] = from_mapping(CameraConfig, table, f"{where}: cameras.{name}")
    device = doc.get("device", "auto")
    if device not in ("auto", "cpu", "cuda"):
        raise ConfigError(f"{where}: device: must be auto, cpu or cuda")
    enabled = {k: v for k, v in cameras.items() if v.enabled}
    if not enabled:
        raise ConfigError(f"{where}: cameras: every camera is disabled (enabled = false)")
    return DaemonConfig(
        cameras=enabled,
        mqtt=from_mapping(MqttConfig, doc["mqtt"], f"{where}: mqtt") if "mqtt" in doc else None,
        metrics=from_mapping(MetricsConfig, doc.get("metrics", {}), f"{where}: metrics"),
        storage=from_mapping(StorageConfig, doc.get("storage", {}), f"{where}: storage"),
        logging=from_mapping(LoggingConfig, doc.get("logging", {}), f"{where}: logging"),
        device=device,
        path=where,
    )


def load_daemon_config(path: Path) -> DaemonConfig:
    return parse_daemon_config(read_toml(path), str(path))


# The embedded default: the demo stream, no broker, metrics on loopback, events under var/.
DEFAULT_DOC: dict[str, Any] = {
    "cameras": {"demo": {"source": "demo", "min_duration": 0.3, "cooldown": 1.0, "update_interval": 2.0}},
}


def default_daemon_config() -> DaemonConfig:
    return parse_daemon_config(DEFAULT_DOC, "<embedded default>")
