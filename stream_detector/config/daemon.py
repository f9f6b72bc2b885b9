"""The daemon's settings (`run`, `check-config`, `events`): cameras, inference, MQTT, metrics,
storage, logging and tuning, parsed from one TOML file, and the embedded default (the demo camera).
"""

from __future__ import annotations

import os
import re
import socket
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from stream_detector.config.detector import DetectorConfig
from stream_detector.config.loading import check, from_mapping, read_toml, shown_key
from stream_detector.config.references import expand
from stream_detector.config.scene import ModelChoice
from stream_detector.config.tuning import TuneConfig
from stream_detector.credentials import unencoded_userinfo, url_password
from stream_detector.errors import ConfigError


@dataclass(frozen=True)
class MqttConfig:
    host: str = "127.0.0.1"
    port: int = 1883
    # Empty: "stream-detector/<node id>", one namespace per host. Set, it is used as written (the
    # topics of releases before node ids); two hosts must then not share it.
    topic_prefix: str = ""
    client_id: str = ""  # empty: "stream-detector-<node id>"
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
        check(bool(self.host), "host", "must not be empty")
        check(0 < self.port < 65536, "port", "must be in 1..65535")
        check(not any(c in self.topic_prefix for c in "#+"), "topic_prefix",
               "must not contain '#' or '+'")
        check(not self.topic_prefix.startswith("/") and not self.topic_prefix.endswith("/")
              and "//" not in self.topic_prefix, "topic_prefix",
              "must not start or end with '/' or hold an empty level ('//')")
        check(self.qos in (0, 1, 2), "qos", "must be 0, 1 or 2")
        check(5 <= self.keepalive <= 3600, "keepalive", "must be in 5..3600")
        check(bool(self.tls_cert_file) == bool(self.tls_key_file), "tls_cert_file",
               "set tls_cert_file and tls_key_file together")
        check(bool(self.tls_ca_file) or not self.tls_cert_file, "tls_cert_file",
               "needs tls_ca_file (TLS is enabled by tls_ca_file)")
        check(bool(self.tls_ca_file) or not self.tls_insecure, "tls_insecure",
               "needs tls_ca_file (TLS is enabled by tls_ca_file)")
        check(bool(self.username) or not self.password, "password", "needs a username")
        check(len(self.client_id) <= 128, "client_id", "must be at most 128 characters")
        check(0 <= self.score_interval <= 3600, "score_interval", "must be in 0..3600")


@dataclass(frozen=True)
class MetricsConfig:
    host: str = "127.0.0.1"
    port: int = 9108  # 0 = pick a free port (logged); tests use it
    ready_after: float = 10.0  # /readyz fails if a camera has not scored a frame for this long

    def __post_init__(self) -> None:
        check(bool(self.host), "host", "must not be empty")
        check(0 <= self.port < 65536, "port", "must be in 0..65535")
        check(0 < self.ready_after <= 86400, "ready_after", "must be in (0, 86400]")


LOOPBACK_NAMES = ("localhost", "::1")  # and 127.0.0.0/8


def is_loopback(host: str) -> bool:
    return host in LOOPBACK_NAMES or host.startswith("127.")


@dataclass(frozen=True)
class ApiConfig:
    """The review API and page (/api/..., /), served by the server behind /metrics."""

    enabled: bool = True
    # Required when metrics.host is not a loopback address: requests then carry it as
    # "Authorization: Bearer TOKEN" (the page keeps it in a cookie); /metrics stays open. Like any
    # string key it may be given as token_file (the file holds it) or ${NAME}.
    token: str = ""
    # How others reach this server, for the clip URLs in MQTT (empty: http://metrics.host:port).
    public_url: str = ""

    def __post_init__(self) -> None:
        check(not self.token or valid_token(self.token), "token",
               "must be 16..256 printable characters without spaces")
        parts = urlsplit(self.public_url)
        check(not self.public_url or (parts.scheme in ("http", "https") and bool(parts.netloc)),
               "public_url", "must be an http:// or https:// URL")


def valid_token(token: str) -> bool:
    return 16 <= len(token) <= 256 and token.isprintable() and " " not in token


@dataclass(frozen=True)
class StorageConfig:
    path: str = "var/stream-detector"  # events.sqlite and snapshots/ live here
    snapshots: bool = True
    keep_days: float = 30.0
    keep_mb: float = 1000.0  # events.sqlite plus snapshots/; the oldest go first; 0 = no limit

    def __post_init__(self) -> None:
        check(bool(self.path), "path", "must not be empty")
        check(0 < self.keep_days <= 36500, "keep_days", "must be in (0, 36500]")
        check(0 <= self.keep_mb <= 1e9, "keep_mb", "must be in [0, 1e9] (0 = no limit)")


@dataclass(frozen=True)
class LoggingConfig:
    level: str = "info"

    def __post_init__(self) -> None:
        check(self.level in ("debug", "info", "warning", "error"), "level",
               "must be debug, info, warning or error")


MAX_SIDE = 4096  # pixels: the model works at ~200 px; a larger resize target is a typo that
# would fill the frame queue with gigabytes


# The committed demo model, a camera's model when it names none (source checkout or editable install).
# Here, not in model/, so the command line can name it without importing torch.
DEFAULT_MODEL = Path(__file__).resolve().parents[2] / "models" / "vtest"
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
    # Event clips: the camera's recent video is kept (network streams copied as they are, other
    # sources' frames encoded small) so each event's clip runs from pre_capture s before its start
    # to post_capture s after its end; the end is published once its clip is made.
    clip: bool = True
    pre_capture: float = 5.0
    post_capture: float = 5.0
    # Several models, each with a rule (picture grey/colour, hours): the first whose rule holds
    # scores; `model` is then left empty. See config/scene.py.
    models: tuple[ModelChoice, ...] = ()
    # Raise one camera_tampered event (and suppress anomaly events) while the picture no longer
    # matches what it learned live for at least `tamper_after` seconds: covered, turned, blurred.
    tamper: bool = True
    tamper_after: float = 4.0
    tune: bool = True  # with [tune] enabled: false keeps this camera on its configured model(s)

    def __post_init__(self) -> None:
        check(bool(self.source), "source", "must not be empty")
        check(not (self.model and self.models), "models", "set model or models, not both")
        names = [m.name for m in self.models]
        twice = sorted({n for n in names if names.count(n) > 1})
        check(not twice, "models", f"model name {twice[0] if twice else ''!r} is used twice")
        check(1 <= self.tamper_after <= 600, "tamper_after", "must be in 1..600")
        for key in ("source", "detect_source"):  # checked before anything parses the URL
            check(not unencoded_userinfo(getattr(self, key)), key,
                  "the user name or password holds '/', '?', '#' or '@' unencoded (or the URL "
                  "has an '@' after its host): percent-encode them (%2F, %3F, %23, %40)")
        check(0 <= self.pre_capture <= 60, "pre_capture", "must be in 0..60 (seconds)")
        check(0 <= self.post_capture <= 60, "post_capture", "must be in 0..60 (seconds)")
        check(self.fps_limit is None or 0 <= self.fps_limit <= 1000, "fps_limit", "must be in 0..1000")
        check(self.capture in CAPTURES, "capture", "must be auto, opencv or ffmpeg")
        check(self.capture != "ffmpeg" or not self.source.isdigit(), "capture",
               "ffmpeg reads files and network streams; a USB device needs auto or opencv")
        check(self.capture != "ffmpeg" or not self.detect_source.isdigit(), "detect_source",
               "ffmpeg reads files and network streams; a USB device needs auto or opencv")
        check(self.detect_source != self.source, "detect_source",
               "must differ from source (leave it empty to score source)")
        check(len(self.hwaccel) <= 32 and set(self.hwaccel) <= HWACCEL_CHARS, "hwaccel",
               "must be an ffmpeg -hwaccel name (a-z, 0-9, '_', at most 32 characters)")
        check(not self.hwaccel or self.capture == "ffmpeg", "hwaccel", 'needs capture = "ffmpeg"')
        check((self.width == 0) == (self.height == 0), "width", "set width and height together")
        check(self.width == 0 or 32 <= self.width <= MAX_SIDE, "width", f"must be 0 or in 32..{MAX_SIDE}")
        check(self.height == 0 or 32 <= self.height <= MAX_SIDE, "height",
               f"must be 0 or in 32..{MAX_SIDE}")
        check(0 < self.false_alarms_per_hour <= 3600, "false_alarms_per_hour", "must be in (0, 3600]")
        check(0 <= self.min_duration <= 3600, "min_duration", "must be in 0..3600")
        check(0 <= self.cooldown <= 3600, "cooldown", "must be in 0..3600")
        check(0 < self.low_threshold_ratio <= 1, "low_threshold_ratio", "must be in (0, 1]")
        check(0 < self.update_interval <= 86400, "update_interval", "must be in (0, 86400]")
        check(0.1 <= self.stale_after <= 3600, "stale_after", "must be in 0.1..3600")
        check(1 <= self.queue_size <= 1024, "queue_size", "must be in 1..1024")
        for i, poly in enumerate(self.ignore):
            check(len(poly) >= 3, f"ignore[{i}]", "a polygon needs at least 3 points")

    @property
    def model_choices(self) -> tuple[ModelChoice, ...]:
        """`models`, or the one `model` (the demo model when empty) named "default"."""
        return self.models or (ModelChoice("default", self.model or str(DEFAULT_MODEL)),)


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
        check(0 <= self.torch_threads <= 256, "torch_threads", "must be in 0..256 (0 = auto)")
        check(self.precision in ("auto", "fp16", "fp32"), "precision", "must be auto, fp16 or fp32")
        check(0 <= self.linger_ms <= 1000, "linger_ms", "must be in 0..1000")


NODE_ID = re.compile(r"[A-Za-z0-9_-]{1,64}")


def host_node_id() -> str:
    """This host's default node id: its host name up to the first dot, in the characters MQTT
    topics and Home Assistant ids allow (read when asked, so a renamed host is seen at start)."""
    name = socket.gethostname().split(".", 1)[0]
    return re.sub(r"[^A-Za-z0-9_-]", "_", name)[:64] or "localhost"


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
    api: ApiConfig = ApiConfig()
    # This host in MQTT topics, client id, Home Assistant ids and event payloads; empty: the host name
    node_id: str = ""
    # How `fit --config FILE --camera NAME` fits this file's cameras; the daemon does not use it.
    detector: DetectorConfig = DetectorConfig()
    tune: TuneConfig = TuneConfig()  # the daemon tuning its models with false alarms, on a schedule

    def __post_init__(self) -> None:
        check(self.device in ("auto", "cpu", "cuda"), "device", "must be auto, cpu or cuda")
        check(bool(self.cameras), "cameras", "configure at least one camera")
        check(not self.node_id or bool(NODE_ID.fullmatch(self.node_id)), "node_id",
               "use 1-64 letters, digits, '_' or '-'")

    def secrets(self) -> list[tuple[str, str, str]]:
        """(dotted key, its value, the secret in it) for every secret the config holds: the MQTT
        password, each camera URL's password and the review API's token."""
        out = []
        if self.api.token:
            out.append(("api.token", self.api.token, self.api.token))
        if self.mqtt is not None and self.mqtt.password:
            out.append(("mqtt.password", self.mqtt.password, self.mqtt.password))
        for name, cam in self.cameras.items():
            for key in ("source", "detect_source"):
                value = getattr(cam, key)
                if secret := url_password(value):
                    out.append((f"cameras.{name}.{key}", value, secret))
        return out

    @property
    def node(self) -> str:
        """The node id in use: `node_id`, else this host's name."""
        return self.node_id or host_node_id()


CAMERA_NAME_CHARS = set("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_-")


def parse_daemon_config(doc: dict[str, Any], where: str,
                        env: Mapping[str, str] | None = None) -> DaemonConfig:
    """Validate a parsed TOML document; `where` (the file) prefixes every message. `${NAME}` in a
    string comes from `env` (default: the process environment)."""
    env = os.environ if env is None else env
    allowed = {"mqtt", "metrics", "storage", "logging", "device", "inference", "cameras", "node_id",
               "api", "detector", "tune"}
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
        cameras[name] = from_mapping(CameraConfig, table, f"{where}: cameras.{name}", env)
    device = doc.get("device", "auto")
    device = expand(device, f"{where}: device", env) if isinstance(device, str) else device
    if not isinstance(device, str) or device not in ("auto", "cpu", "cuda"):
        raise ConfigError(f"{where}: device: must be auto, cpu or cuda")
    node_id = doc.get("node_id", "")
    node_id = expand(node_id, f"{where}: node_id", env) if isinstance(node_id, str) else node_id
    if not isinstance(node_id, str) or (node_id and not NODE_ID.fullmatch(node_id)):
        raise ConfigError(f"{where}: node_id: use 1-64 letters, digits, '_' or '-'")
    enabled = {k: v for k, v in cameras.items() if v.enabled}
    if not enabled:
        raise ConfigError(f"{where}: cameras: every camera is disabled (enabled = false)")
    metrics = from_mapping(MetricsConfig, doc.get("metrics", {}), f"{where}: metrics", env)
    api = from_mapping(ApiConfig, doc.get("api", {}), f"{where}: api", env)
    if api.enabled and not api.token and not is_loopback(metrics.host):
        raise ConfigError(f"{where}: api.token: required when metrics.host ({metrics.host}) is not "
                          f"a loopback address: set api.token or api.token_file, or api.enabled = "
                          f"false")
    return DaemonConfig(
        cameras=enabled,
        mqtt=from_mapping(MqttConfig, doc["mqtt"], f"{where}: mqtt", env) if "mqtt" in doc else None,
        metrics=metrics,
        api=api,
        storage=from_mapping(StorageConfig, doc.get("storage", {}), f"{where}: storage", env),
        logging=from_mapping(LoggingConfig, doc.get("logging", {}), f"{where}: logging", env),
        device=device,
        inference=from_mapping(InferenceConfig, doc.get("inference", {}), f"{where}: inference",
                               env),
        path=where,
        node_id=node_id,
        detector=from_mapping(DetectorConfig, doc.get("detector", {}), f"{where}: detector",
                              env),
        tune=from_mapping(TuneConfig, doc.get("tune", {}), f"{where}: tune", env),
    )


def load_daemon_config(path: Path) -> DaemonConfig:
    return parse_daemon_config(read_toml(path), str(path))


# The embedded default: the demo stream, no broker, metrics on loopback, events under var/.
DEFAULT_DOC: dict[str, Any] = {
    "cameras": {"demo": {"source": "demo", "min_duration": 0.3, "cooldown": 1.0, "update_interval": 2.0}},
}


def default_daemon_config() -> DaemonConfig:
    return parse_daemon_config(DEFAULT_DOC, "<embedded default>")
