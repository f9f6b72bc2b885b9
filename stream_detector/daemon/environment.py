"""Loading a config: its values, then what it needs from this machine, checked before anything
starts: storage, ports, hosts, TLS and video files, ffmpeg; files that show a secret to everyone.
`run`, SIGHUP reloads and `check-config` all call `load_config`; then `checks.check_cameras`.

Checks only look: nothing is created, no connection is made (a port is bound and released at once).
"""

from __future__ import annotations

import errno
import os
import socket
import ssl
import stat
from pathlib import Path
from urllib.parse import urlsplit

from stream_detector.capture import (
    DEMO_SOURCE,
    DEMO_VIDEO,
    ffmpeg_hwaccels,
    ffmpeg_missing,
    source_kind,
    video_info,
)
from stream_detector.config import (
    CameraConfig,
    DaemonConfig,
    Expanded,
    MetricsConfig,
    MqttConfig,
    StorageConfig,
    default_daemon_config,
    load_daemon_config,
    shown,
)
from stream_detector.credentials import url_password
from stream_detector.errors import ConfigError, SourceError
from stream_detector.outputs import FILE_NAME


def load_config(path: Path | None, running: DaemonConfig | None = None,
                environment: bool = True) -> DaemonConfig:
    """The one validation of run, SIGHUP reload and check-config: the file's values, then what they
    need from this machine (storage, ports, hosts, TLS and video files). `running`: on a reload."""
    cfg = load_daemon_config(path) if path else default_daemon_config()
    if environment:
        check_environment(cfg, running)
    return cfg


def check_environment(cfg: DaemonConfig, running: DaemonConfig | None = None) -> None:
    """Every machine-dependent check of `cfg`; `running` is the config a reload replaces."""
    where = cfg.path
    check_storage(cfg.storage, where)
    if running is None or running.metrics != cfg.metrics:  # else the port is ours already
        check_listen(cfg.metrics, where)
    if cfg.mqtt is not None:
        check_mqtt(cfg.mqtt, where)
    for name, cam in cfg.cameras.items():
        check_source(name, cam, where)
        check_capture(name, cam, where)


def check_storage(storage: StorageConfig, where: str) -> None:
    """A writable directory, or a path that can be created inside a writable directory."""
    key = f"{where}: storage.path"
    path = Path(storage.path).absolute()
    existing = path
    try:
        while not existing.exists() and not existing.is_symlink():
            existing = existing.parent
    except OSError as exc:  # a name too long, a symlink loop
        raise ConfigError(f"{key}: {shown(storage.path)}: {exc.strerror}") from None
    if existing != path and not existing.is_dir():
        raise ConfigError(f"{key}: {existing} is a file, so {path} cannot be created")
    if existing == path and not path.is_dir():
        raise ConfigError(f"{key}: {path} is not a directory")
    if not os.access(existing, os.W_OK | os.X_OK):
        raise ConfigError(f"{key}: {existing} is not writable (read-only or permission denied)")
    for inner, want_dir in ((path / FILE_NAME, False), (path / "snapshots", True)):
        if inner.exists() and inner.is_dir() != want_dir:
            raise ConfigError(f"{key}: {inner} should be a {'directory' if want_dir else 'file'}")
        if inner.exists() and not os.access(inner, os.W_OK):
            raise ConfigError(f"{key}: {inner} is not writable")


def check_listen(metrics: MetricsConfig, where: str) -> None:
    """The metrics server can listen there: the host is an address of this machine, the port free."""
    family = socket.AF_INET6 if ":" in metrics.host else socket.AF_INET  # as the HTTP server does
    try:
        infos = socket.getaddrinfo(metrics.host, metrics.port, family, socket.SOCK_STREAM)
    except (socket.gaierror, UnicodeError) as exc:
        raise ConfigError(f"{where}: metrics.host: {metrics.host!r} does not resolve "
                          f"({getattr(exc, 'strerror', None) or exc})") from None
    with socket.socket(family, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as http.server does
        try:
            sock.bind(infos[0][4])
        except OSError as exc:
            if exc.errno == errno.EADDRINUSE:
                raise ConfigError(f"{where}: metrics.port: {metrics.port} is already in use on "
                                  f"{metrics.host}") from None
            if exc.errno == errno.EADDRNOTAVAIL:
                raise ConfigError(f"{where}: metrics.host: {metrics.host} is not an address of "
                                  f"this machine") from None
            raise ConfigError(f"{where}: metrics.port: cannot listen on {metrics.host}:"
                              f"{metrics.port} ({exc.strerror})") from None


def check_mqtt(mqtt: MqttConfig, where: str) -> None:
    """The broker's name resolves, and each TLS file is readable and holds what its key says."""
    try:
        socket.getaddrinfo(mqtt.host, mqtt.port, type=socket.SOCK_STREAM)
    except (socket.gaierror, UnicodeError) as exc:
        # A temporary DNS failure is the broker connection's to retry; a name that does not exist
        # will never connect.
        if getattr(exc, "errno", None) != socket.EAI_AGAIN:
            raise ConfigError(f"{where}: mqtt.host: {mqtt.host!r} does not resolve "
                              f"({getattr(exc, 'strerror', None) or exc})") from None
    for key in ("tls_ca_file", "tls_cert_file", "tls_key_file"):
        if getattr(mqtt, key):
            check_readable(getattr(mqtt, key), f"{where}: mqtt.{key}")
    if not mqtt.tls_ca_file:
        return
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    try:
        context.load_verify_locations(cafile=mqtt.tls_ca_file)
    except (ssl.SSLError, ValueError) as exc:
        raise ConfigError(f"{where}: mqtt.tls_ca_file: {mqtt.tls_ca_file} holds no usable CA "
                          f"certificate ({exc.__class__.__name__})") from None
    if not mqtt.tls_cert_file:
        return
    if b"-----BEGIN CERTIFICATE-----" not in Path(mqtt.tls_cert_file).read_bytes():
        raise ConfigError(f"{where}: mqtt.tls_cert_file: {mqtt.tls_cert_file} holds no PEM certificate")
    try:  # an encrypted key gets the empty password instead of a prompt on the terminal
        context.load_cert_chain(mqtt.tls_cert_file, mqtt.tls_key_file, password="")
    except (ssl.SSLError, ValueError):
        raise ConfigError(f"{where}: mqtt.tls_key_file: {mqtt.tls_key_file} is not an unencrypted "
                          f"private key matching tls_cert_file") from None


def check_readable(name: str, key: str) -> None:
    """A regular file this process can open for reading (tried, not guessed from permission bits)."""
    path = Path(name)
    try:
        if not path.is_file():
            raise ConfigError(f"{key}: {path}: no such file" if not path.exists()
                              else f"{key}: {path} is not a regular file")
        with open(path, "rb") as fh:
            fh.read(1)
    except OSError as exc:  # unreadable, a name too long, a symlink loop
        raise ConfigError(f"{key}: {shown(name)}: cannot read ({exc.strerror})") from None


def check_source(name: str, cam: CameraConfig, where: str) -> None:
    """A local file must be a video that decodes; a URL needs a host; the demo needs its video.
    Cameras are not contacted. `detect_source`, when set, is checked the same way."""
    for field in ("source", "detect_source"):
        if value := getattr(cam, field):
            _check_uri(value, f"{where}: cameras.{name}.{field}")


def _check_uri(uri: str, key: str) -> None:
    try:
        kind = source_kind(uri)
        parts = urlsplit(uri)
        parts.port  # noqa: B018 (parses the port: ValueError when it is not a number)
    except ValueError as exc:  # "rtsp://[::1", "rtsp://cam:99x/"
        # The parser's words quote the text it choked on, which may hold part of a password.
        why = "its host or port" if url_password(uri) else str(exc)
        raise ConfigError(f"{key}: not a valid URL ({why})") from None
    if uri == DEMO_SOURCE:
        if not DEMO_VIDEO.is_file():
            raise ConfigError(f"{key}: demo video {DEMO_VIDEO} missing "
                              f"(install Debian's opencv-doc)")
        return
    if kind == "device":
        return
    if kind == "stream":
        if not parts.hostname:
            raise ConfigError(f"{key}: the URL has no host")
        return
    check_readable(uri, key)
    try:
        video_info(Path(uri))
    except SourceError as exc:
        raise ConfigError(f"{key}: {exc}") from None


def check_capture(name: str, cam: CameraConfig, where: str) -> None:
    """capture = "ffmpeg" needs the ffmpeg program (auto falls back to OpenCV without it), and a
    `hwaccel` this ffmpeg knows: else every open of the camera would fail the same way."""
    if cam.capture != "ffmpeg":
        return
    if missing := ffmpeg_missing():
        raise ConfigError(f'{where}: cameras.{name}.capture: "ffmpeg" needs {missing}')
    if cam.hwaccel and cam.hwaccel not in ("auto", "none"):
        known = ffmpeg_hwaccels()
        if cam.hwaccel not in known:
            raise ConfigError(f"{where}: cameras.{name}.hwaccel: {cam.hwaccel!r} is not a method "
                              f"this ffmpeg knows (known: {', '.join(known) or 'none'}, auto)")


def secret_warnings(cfg: DaemonConfig) -> list[str]:
    """One line for each file every local user can read that holds one of the config's secrets
    in clear: the config file itself, or a KEY_file. A secret given as ${NAME} lives in the
    process environment, which only its user (and root) can read."""
    holders: dict[str, list[str]] = {}
    for key, value, secret in cfg.secrets():
        if isinstance(value, Expanded) and value.template is None:
            path = value.path
        elif isinstance(value, Expanded) and not value.literal(secret):
            continue
        elif cfg.path and Path(cfg.path).is_file():
            path = cfg.path
        else:
            continue
        holders.setdefault(path, []).append(key)
    lines = []
    for path, keys in holders.items():
        try:
            readable = bool(os.stat(path).st_mode & stat.S_IROTH)
        except OSError:
            continue
        if readable:
            lines.append(f"{path} is readable by every user and holds the secret of "
                         f"{', '.join(keys)}: chmod o-r {path}, or give the secret as ${{NAME}} "
                         f"from the environment or in a KEY_file only the daemon can read")
    return lines
