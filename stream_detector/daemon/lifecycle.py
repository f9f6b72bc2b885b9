"""The daemon as a process, from `stream-detector run` to its exit: logging, signals (SIGTERM and
SIGINT stop it, SIGHUP reloads its config), systemd's notifications and watchdog pings, supervision.
"""

from __future__ import annotations

import logging
import signal
import sys
import threading
from pathlib import Path

from stream_detector.config import DaemonConfig
from stream_detector.credentials import Scrubber, ScrubbingFormatter
from stream_detector.daemon.app import Daemon
from stream_detector.daemon.environment import load_config, secret_warnings
from stream_detector.daemon.health import notify_systemd
from stream_detector.errors import UserError

log = logging.getLogger(__name__)


def run(cfg: DaemonConfig, path: Path | None) -> int:
    """Run the daemon on `cfg` (loaded from `path`, None: the embedded default) until SIGTERM or
    SIGINT; each SIGHUP re-reads `path` and applies it. Returns the exit code."""
    scrub = Scrubber(secret for _, _, secret in cfg.secrets())
    handler = logging.StreamHandler(sys.stderr)
    # Every line passes the scrubber: no module or library can log a configured secret.
    handler.setFormatter(ScrubbingFormatter(scrub, "%(asctime)s %(levelname)s %(name)s: %(message)s"))
    logging.basicConfig(level=cfg.logging.level.upper(), handlers=[handler])
    for warning in secret_warnings(cfg):
        log.warning("%s", warning)
    daemon = Daemon(cfg, sys.stdout)
    reload_requested = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: daemon.stop_event.set())
    signal.signal(signal.SIGINT, lambda *_: daemon.stop_event.set())
    signal.signal(signal.SIGHUP, lambda *_: reload_requested.set())
    daemon.start()
    notify_systemd("READY=1")
    stalled: object = []
    while not daemon.stop_event.wait(0.5):
        daemon.supervise()
        healthy, detail = daemon.liveness()
        if healthy:  # a stalled worker stops the pings: systemd's watchdog restarts the daemon
            notify_systemd("WATCHDOG=1")
        elif detail.get("stale") != stalled:
            log.error("threads stalled or dead: %s; not pinging the watchdog", detail)
        stalled = detail.get("stale")
        if reload_requested.is_set():
            reload_requested.clear()
            if path is None:
                log.info("SIGHUP: running the embedded default config, nothing to reload")
                continue
            notify_systemd("RELOADING=1")
            try:
                new = load_config(path, running=daemon.cfg)
                scrub.add(secret for _, _, secret in new.secrets())
                daemon.reload(new)
            except UserError as exc:
                log.error("reload failed, keeping the running config: %s", exc)
            notify_systemd("READY=1")
    notify_systemd("STOPPING=1")
    log.info("stopping")
    daemon.stop()
    return 0
