"""Configuration: frozen dataclasses, validated in one place, loaded from TOML with unknown keys rejected.

Every error names the file and the dotted key, in one line.
"""

from __future__ import annotations

import dataclasses
import math
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
    motion: bool = True  # dense optical flow as two more input channels, predicted and scored too
    window: int = 8  # T: frames per window (T-1 context frames predict the last one)
    cell: int = 16  # space-slice size in working pixels
    cell_stride: int = 8  # step between space slices; < cell means overlapping slices
    channels: int = 32  # spatial-branch width
    temporal_channels: int = 16  # temporal-branch width
    # "predict" the last frame (and its motion) from the others, "reconstruct" it, or predict its
    # "motion" from the window's appearance alone.
    pretext: str = "motion"
    flow_weight: float = 1.0  # weight of the motion channels' loss beside the appearance loss
    # Cell score = weighted sum of the cues' baseline z-scores: appearance error, motion error, speed
    # (pretext "motion" has no appearance error; with "predict", give the first weight a value).
    cue_weights: tuple[float, float, float] = (0.0, 0.5, 1.0)
    holdout: float = 0.25  # share of the footage held back from training to set baseline + threshold
    epochs: int = 12
    batch_size: int = 32
    learning_rate: float = 2e-3
    max_train_frames: int = 6000  # cap on frames held in memory for fitting
    baseline: str = "quantile"  # per-cell error statistic: "quantile" (median, q99) or "mean_std"
    scale_floor: float = 1.0  # a cell's scale is at least this multiple of the median cell scale
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
        _check(self.pretext in ("predict", "reconstruct", "motion"), "pretext",
               "must be 'predict', 'reconstruct' or 'motion'")
        _check(self.pretext != "motion" or self.motion, "pretext", "'motion' needs motion = true")
        _check(0 <= self.flow_weight <= 100, "flow_weight", "must be in 0..100")
        _check(len(self.cue_weights) == 3 and all(0 <= w <= 100 for w in self.cue_weights)
               and sum(self.cue_weights) > 0, "cue_weights", "must be 3 numbers in 0..100, not all 0")
        _check(0 <= self.holdout <= 0.5, "holdout", "must be in 0..0.5")
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
        raise ConfigError(f"{where}.{shown_key(unknown[0])}: unknown key (allowed: {', '.join(sorted(fields))})")
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
            raise ConfigError(f"{where}: expected a list, got {shown(value)}")
        args = typing.get_args(hint)
        if origin is tuple and args and args[-1] is not Ellipsis:  # fixed length: (x, y)
            if len(value) != len(args):
                raise ConfigError(f"{where}: expected {len(args)} values, got {len(value)}")
            return tuple(_coerce(v, a, f"{where}[{i}]") for i, (v, a) in enumerate(zip(value, args)))
        inner = args[0] if args else Any
        items = [_coerce(v, inner, f"{where}[{i}]") for i, v in enumerate(value)]
        return tuple(items) if origin is tuple else items
    if hint is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"{where}: expected a number, got {shown(value)}")
        if isinstance(value, float) and not math.isfinite(value):
            raise ConfigError(f"{where}: expected a finite number, got {shown(value)}")
        if abs(value) > 1e15:  # also keeps float() from overflowing on huge integers
            raise ConfigError(f"{where}: {shown(value)} is out of range")
        return float(value)
    if hint in (int, str, bool):
        if not isinstance(value, hint) or (hint is int and isinstance(value, bool)):
            raise ConfigError(f"{where}: expected {hint.__name__}, got {shown(value)}")
        if hint is str and any(ord(c) < 32 or ord(c) == 127 for c in value):
            raise ConfigError(f"{where}: must not contain control characters (newline, tab, NUL)")
        return value
    return value


def shown(value: Any) -> str:
    """A value for a one-line message: repr'd (quotes, escaped newlines) and shortened."""
    try:
        text = repr(value)
    except ValueError:  # an integer with thousands of digits
        return f"a very large {type(value).__name__}"
    return text if len(text) <= 60 else text[:57] + "..."


def shown_key(key: str) -> str:
    """A key as written, unless it holds characters that would break the line."""
    return key if key.isprintable() else shown(key)


MAX_CONFIG_BYTES = 1 << 20  # a config is a few KB; anything near this is the wrong file


def read_toml(path: Path) -> dict[str, Any]:
    """Parse a TOML file; any I/O, encoding or syntax problem becomes a one-line ConfigError."""
    try:
        with open(path, "rb") as fh:
            raw = fh.read(MAX_CONFIG_BYTES + 1)
    except FileNotFoundError:
        raise ConfigError(f"{path}: config file not found") from None
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read config ({exc.strerror})") from None
    if len(raw) > MAX_CONFIG_BYTES:
        raise ConfigError(f"{path}: larger than {MAX_CONFIG_BYTES >> 20} MB: not a config file")
    if raw.startswith(b"\xef\xbb\xbf"):
        raise ConfigError(f"{path}: starts with a byte-order mark (BOM); save it as UTF-8 without BOM")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{path}: not a UTF-8 text file (byte {exc.start}): a binary file?") from None
    if "\x00" in text:
        raise ConfigError(f"{path}: contains NUL bytes: a binary file?")
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: invalid TOML ({str(exc).splitlines()[0]})") from None
    except RecursionError:
        raise ConfigError(f"{path}: invalid TOML (nested too deeply)") from None


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
        _check(bool(self.tls_ca_file) or not self.tls_cert_file, "tls_cert_file",
               "needs tls_ca_file (TLS is enabled by tls_ca_file)")
        _check(bool(self.tls_ca_file) or not self.tls_insecure, "tls_insecure",
               "needs tls_ca_file (TLS is enabled by tls_ca_file)")
        _check(bool(self.username) or not self.password, "password", "needs a username")
        _check(len(self.client_id) <= 128, "client_id", "must be at most 128 characters")
        _check(0 <= self.score_interval <= 3600, "score_interval", "must be in 0..3600")


@dataclass(frozen=True)
class MetricsConfig:
    host: str = "127.0.0.1"
    port: int = 9108  # 0 = pick a free port (logged); tests use it
    ready_after: float = 10.0  # /readyz fails if a camera has not scored a frame for this long

    def __post_init__(self) -> None:
        _check(bool(self.host), "host", "must not be empty")
        _check(0 <= self.port < 65536, "port", "must be in 0..65535")
        _check(0 < self.ready_after <= 86400, "ready_after", "must be in (0, 86400]")


@dataclass(frozen=True)
class StorageConfig:
    path: str = "var/stream-detector"  # events.sqlite and snapshots/ live here
    snapshots: bool = True
    keep_days: float = 30.0
    keep_mb: float = 1000.0  # events.sqlite plus snapshots/; the oldest go first; 0 = no limit

    def __post_init__(self) -> None:
        _check(bool(self.path), "path", "must not be empty")
        _check(0 < self.keep_days <= 36500, "keep_days", "must be in (0, 36500]")
        _check(0 <= self.keep_mb <= 1e9, "keep_mb", "must be in [0, 1e9] (0 = no limit)")


@dataclass(frozen=True)
class LoggingConfig:
    level: str = "info"

    def __post_init__(self) -> None:
        _check(self.level in ("debug", "info", "warning", "error"), "level",
               "must be debug, info, warning or error")


MAX_SIDE = 4096  # pixels: the model works at ~200 px; a larger resize target is a typo that
# would fill the frame queue with gigabytes


CAPTURES = ("auto", "opencv", "ffmpeg")
HWACCEL_CHARS = set("abcdefghijklmnopqrstuvwxyz0123456789_")


@dataclass(frozen=True)
class CameraConfig:
    source: str  # rtsp://, http(s)://, tcp://, udp://, a file path, or a USB device index ("0")
    model: str = ""  # model directory; empty = the committed demo model
    enabled: bool = True
    realtime: bool = True  # files: pace at their native frame rate (False: as fast as possible)
    loop: bool = False  # files: start again at the end
    # Frames scored per second: unset = the rate the model was fitted at (its windows and motion
    # mean that many frames per second); 0 = every frame. Skipped frames are decoded, not converted.
    fps_limit: float | None = None
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
    # How frames are read: "ffmpeg" runs one ffmpeg process per camera, so a camera whose open hangs
    # never delays another's (OpenCV opens captures one at a time); "opencv" decodes in-process;
    # "auto" is ffmpeg for network streams when the ffmpeg program is installed, else opencv.
    capture: str = "auto"
    hwaccel: str = ""  # ffmpeg capture: decode with `-hwaccel VALUE` (cuda, vaapi, qsv, auto, ...)
    # A camera's low-resolution substream, scored instead of `source`; `source` (the main stream)
    # then feeds snapshots only. The model works at ~200 px: decoding 1080p just to score is waste.
    detect_source: str = ""

    def __post_init__(self) -> None:
        _check(bool(self.source), "source", "must not be empty")
        _check(self.fps_limit is None or 0 <= self.fps_limit <= 1000, "fps_limit", "must be in 0..1000")
        _check(self.capture in CAPTURES, "capture", "must be auto, opencv or ffmpeg")
        _check(self.capture != "ffmpeg" or not self.source.isdigit(), "capture",
               "ffmpeg reads files and network streams; a USB device needs auto or opencv")
        _check(self.capture != "ffmpeg" or not self.detect_source.isdigit(), "detect_source",
               "ffmpeg reads files and network streams; a USB device needs auto or opencv")
        _check(self.detect_source != self.source, "detect_source",
               "must differ from source (leave it empty to score source)")
        _check(len(self.hwaccel) <= 32 and set(self.hwaccel) <= HWACCEL_CHARS, "hwaccel",
               "must be an ffmpeg -hwaccel name (a-z, 0-9, '_', at most 32 characters)")
        _check(not self.hwaccel or self.capture == "ffmpeg", "hwaccel", 'needs capture = "ffmpeg"')
        _check((self.width == 0) == (self.height == 0), "width", "set width and height together")
        _check(self.width == 0 or 32 <= self.width <= MAX_SIDE, "width", f"must be 0 or in 32..{MAX_SIDE}")
        _check(self.height == 0 or 32 <= self.height <= MAX_SIDE, "height",
               f"must be 0 or in 32..{MAX_SIDE}")
        _check(0 < self.false_alarms_per_hour <= 3600, "false_alarms_per_hour", "must be in (0, 3600]")
        _check(0 <= self.min_duration <= 3600, "min_duration", "must be in 0..3600")
        _check(0 <= self.cooldown <= 3600, "cooldown", "must be in 0..3600")
        _check(0 < self.low_threshold_ratio <= 1, "low_threshold_ratio", "must be in (0, 1]")
        _check(0 < self.update_interval <= 86400, "update_interval", "must be in (0, 86400]")
        _check(0.1 <= self.stale_after <= 3600, "stale_after", "must be in 0.1..3600")
        _check(1 <= self.queue_size <= 1024, "queue_size", "must be in 1..1024")
        for i, poly in enumerate(self.ignore):
            _check(len(poly) >= 3, f"ignore[{i}]", "a polygon needs at least 3 points")


@dataclass(frozen=True)
class InferenceConfig:
    """How the one inference thread runs the model for every camera."""

    # Threads of torch's CPU kernels; 0 = auto: about half the cores (1 on a 2-core host), the rest
    # left to the capture threads, which decode and compute motion in parallel. Torch with more
    # threads than it can have collapses (measured 10-20x slower on a busy 2-core host).
    torch_threads: int = 0
    # auto = half precision on CUDA when the model allows it, else float32; fp16 / fp32 force one.
    precision: str = "auto"
    linger_ms: float = 5.0  # once frames wait, how long to wait for other cameras' to share a call

    def __post_init__(self) -> None:
        _check(0 <= self.torch_threads <= 256, "torch_threads", "must be in 0..256 (0 = auto)")
        _check(self.precision in ("auto", "fp16", "fp32"), "precision", "must be auto, fp16 or fp32")
        _check(0 <= self.linger_ms <= 1000, "linger_ms", "must be in 0..1000")


@dataclass(frozen=True)
class DaemonConfig:
    cameras: dict[str, CameraConfig]
    mqtt: MqttConfig | None = None  # None: events go to the store and stdout only
    metrics: MetricsConfig = MetricsConfig()
    storage: StorageConfig = StorageConfig()
    logging: LoggingConfig = LoggingConfig()
    device: str = "auto"  # auto | cpu | cuda
    inference: InferenceConfig = InferenceConfig()
    path: str = ""  # the file it came from, for messages and SIGHUP reloads

    def __post_init__(self) -> None:
        _check(self.device in ("auto", "cpu", "cuda"), "device", "must be auto, cpu or cuda")
        _check(bool(self.cameras), "cameras", "configure at least one camera")


CAMERA_NAME_CHARS = set("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_-")


def parse_daemon_config(doc: dict[str, Any], where: str) -> DaemonConfig:
    """Validate a parsed TOML document; `where` (the file) prefixes every message."""
    allowed = {"mqtt", "metrics", "storage", "logging", "device", "inference", "cameras"}
    unknown = sorted(set(doc) - allowed)
    if unknown:
        raise ConfigError(f"{where}: {shown_key(unknown[0])}: unknown key (allowed: {', '.join(sorted(allowed))})")
    cams = doc.get("cameras")
    if not isinstance(cams, dict) or not cams:
        raise ConfigError(f"{where}: cameras: configure at least one camera ([cameras.NAME] source = ...)")
    cameras = {}
    for name, table in cams.items():
        if not name or not set(name) <= CAMERA_NAME_CHARS:
            raise ConfigError(f"{where}: cameras.{shown_key(name)}: camera names use letters, digits, "
                              f"'_' and '-' only")
        cameras[name] = from_mapping(CameraConfig, table, f"{where}: cameras.{name}")
    device = doc.get("device", "auto")
    if not isinstance(device, str) or device not in ("auto", "cpu", "cuda"):
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
        inference=from_mapping(InferenceConfig, doc.get("inference", {}), f"{where}: inference"),
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
