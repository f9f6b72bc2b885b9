"""The real daemon for integration tests: `stream-detector run` as a child process, its TOML config,
its /metrics read back, a systemd notify socket, and clips with an injected object.

Not a conftest.py: that name would shadow tests/conftest.py (see mqtt_broker.py).
"""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

import cv2
from prometheus_client.parser import text_string_to_metric_families

from schema_check import errors

from stream_detector.capture import Injection

ROOT = Path(__file__).resolve().parents[2]


def write_clip(src: Path, dst: Path, first: int, count: int, injection: Injection | None = None,
               size: tuple[int, int] | None = None) -> Path:
    """`count` frames of `src` from frame `first` as MJPG at 10 fps, optionally resized to `size`
    (width, height) and with `injection` drawn in (its frame numbers count from the clip's start)."""
    cap = cv2.VideoCapture(str(src))
    cap.set(cv2.CAP_PROP_POS_FRAMES, first)
    writer = None
    for i in range(count):
        ok, frame = cap.read()
        assert ok, f"{src} has fewer than {first + count} frames"
        if size is not None:
            frame = cv2.resize(frame, size, interpolation=cv2.INTER_AREA)
        if injection:
            frame = injection.apply(frame, i)
        if writer is None:
            h, w = frame.shape[:2]
            writer = cv2.VideoWriter(str(dst), cv2.VideoWriter_fourcc(*"MJPG"), 10.0, (w, h))
        writer.write(frame)
    assert writer is not None
    writer.release()
    cap.release()
    return dst


# --- event payloads -------------------------------------------------------------------------------

SCHEMA = json.loads((ROOT / "stream_detector" / "schema" / "event.schema.json").read_text())


def check_event_sequences(events: list[dict[str, Any]]) -> list[list[dict[str, Any]]]:
    """Group payloads by event id; each must read new, update..., end, chained through `before`."""
    by_id: dict[str, list[dict[str, Any]]] = {}
    for e in events:
        assert errors(e, SCHEMA) == [], e
        by_id.setdefault(e["after"]["id"], []).append(e)
    for seq in by_id.values():
        types = [e["type"] for e in seq]
        assert types[0] == "new" and types[-1] == "end" and set(types[1:-1]) <= {"update"}, types
        assert [e["before"] for e in seq] == [None] + [e["after"] for e in seq[:-1]]
        start, end = seq[0]["after"], seq[-1]["after"]
        assert end["end_time"] >= start["start_time"] and end["stream_end"] >= start["stream_start"]
    return list(by_id.values())


# --- config files ---------------------------------------------------------------------------------


def _key(key: str) -> str:
    return key if re.fullmatch(r"[A-Za-z0-9_-]+", key) else json.dumps(key)


def _value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, str):
        return json.dumps(value)  # JSON's escapes are valid in TOML basic strings
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(_value(v) for v in value) + "]"
    if isinstance(value, dict):  # an inline table: a list of them is an array of tables
        return "{" + ", ".join(f"{_key(k)} = {_value(v)}" for k, v in value.items()) + "}"
    raise TypeError(f"no TOML form for {value!r}")


def to_toml(doc: dict[str, Any]) -> str:
    """TOML for nested dicts (tables) of strings, numbers, booleans, lists and lists of tables."""
    lines: list[str] = []

    def table(path: list[str], data: dict[str, Any]) -> None:
        scalars = {k: v for k, v in data.items() if not isinstance(v, dict)}
        if path and (scalars or not data):
            lines.append(f"[{'.'.join(_key(p) for p in path)}]")
        lines.extend(f"{_key(k)} = {_value(v)}" for k, v in scalars.items())
        for k, v in data.items():
            if isinstance(v, dict):
                table([*path, k], v)

    table([], doc)
    return "\n".join(lines) + "\n"


def write_config(path: Path, doc: dict[str, Any]) -> Path:
    path.write_text(to_toml(doc))
    return path


# --- the command line -----------------------------------------------------------------------------


def cli(*args: str, timeout: float = 120,
        env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """`stream-detector ARGS...` run to completion (killed after `timeout`); `env` is added to
    this process's environment."""
    return subprocess.run([sys.executable, "-m", "stream_detector", *args], capture_output=True,
                          text=True, cwd=ROOT, timeout=timeout, check=False,
                          env={**os.environ, **(env or {})})


def run_benchmark(script: str, *args: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    """benchmarks/SCRIPT ARGS... run to completion on this checkout's package; its stdout is printed
    (`pytest -s`, or the captured output of a failure)."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(
        p for p in (str(ROOT), os.environ.get("PYTHONPATH", "")) if p)}
    done = subprocess.run([sys.executable, script, *args], cwd=ROOT / "benchmarks", env=env,
                          capture_output=True, text=True, timeout=timeout, check=False)
    print(done.stdout)
    assert done.returncode == 0, done.stderr[-3000:]
    return done


def stored_events(config: Path) -> list[dict[str, Any]]:
    """The event store's rows as `stream-detector events --config FILE` prints them."""
    done = cli("events", "--config", str(config))
    assert done.returncode == 0, done.stderr
    return [json.loads(line) for line in done.stdout.splitlines()]


# --- the daemon -----------------------------------------------------------------------------------

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


class DaemonProcess:
    """`stream-detector run --config FILE` as a child process; stdout and stderr go to files.

    `metrics_port` is the [metrics] port the config names; /metrics is read back from it.
    """

    def __init__(self, config: Path, metrics_port: int, workdir: Path,
                 env: dict[str, str] | None = None, main: list[str] | None = None,
                 name: str = "daemon", wrapper: list[str] | None = None) -> None:
        """`main` replaces `-m stream_detector` (a test script that injects a fault, then runs it);
        `name` keeps the output files of several daemons in one folder apart; `wrapper` runs
        before Python and must exec it (e.g. `unshare -u ...`), so the pid stays the daemon's."""
        self.config = config
        self.port = metrics_port
        self.stdout_path = workdir / f"{name}.stdout"
        self.stderr_path = workdir / f"{name}.stderr"
        with open(self.stdout_path, "wb") as out, open(self.stderr_path, "wb") as err:
            self.proc = subprocess.Popen(
                [*(wrapper or []), sys.executable, *(main or ["-m", "stream_detector"]), "run",
                 "--config", str(config)],
                stdout=out, stderr=err, cwd=ROOT,
                env={**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})})

    # --- output ---------------------------------------------------------------------------------

    def log(self) -> str:
        return self.stderr_path.read_text(errors="replace")

    def log_lines(self, *words: str) -> list[str]:
        """Lines of the daemon's log that contain every one of `words`."""
        return [line for line in self.log().splitlines() if all(w in line for w in words)]

    def events_on_stdout(self) -> list[dict[str, Any]]:
        """The JSON event lines written so far (a line still being written is left out)."""
        text = self.stdout_path.read_text()
        return [json.loads(line) for line in text.splitlines(keepends=True) if line.endswith("\n")]

    # --- HTTP -------------------------------------------------------------------------------------

    def get(self, path: str) -> tuple[int, bytes]:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.port}{path}", timeout=5) as resp:
                return resp.status, resp.read()
        except urllib.error.HTTPError as err:
            return err.code, err.read()

    def metrics(self) -> Samples | None:
        """Every sample on /metrics, keyed by (name, labels); None while nothing answers."""
        try:
            status, body = self.get("/metrics")
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            return None
        assert status == 200, (status, body[:200])
        return {(s.name, frozenset(s.labels.items())): s.value
                for family in text_string_to_metric_families(body.decode())
                for s in family.samples}

    def value(self, name: str, **labels: str) -> float | None:
        samples = self.metrics()
        return None if samples is None else samples.get((name, frozenset(labels.items())))

    def wait_metric(self, name: str, ok: Callable[[float], bool], timeout: float,
                    **labels: str) -> float:
        """Poll /metrics until the sample exists and satisfies `ok`; fail at once if the daemon died."""
        deadline = time.monotonic() + timeout
        while True:
            self.assert_running()
            value = self.value(name, **labels)
            if value is not None and ok(value):
                return value
            if time.monotonic() > deadline:
                raise AssertionError(f"timed out after {timeout:.0f} s waiting for {name}{labels} "
                                     f"(last value {value})\n--- daemon log ---\n{self.log()[-3000:]}")
            time.sleep(0.2)

    def wait_up(self, timeout: float = 60) -> None:
        """Until /healthz answers: the daemon is started and handles its signals."""
        self.wait_metric("process_start_time_seconds", lambda v: True, timeout)

    def wait_log(self, *words: str, count: int = 1, timeout: float = 10) -> list[str]:
        deadline = time.monotonic() + timeout
        while len(lines := self.log_lines(*words)) < count:
            self.assert_running()
            if time.monotonic() > deadline:
                raise AssertionError(f"no log line with {words} after {timeout:.0f} s\n"
                                     f"--- daemon log ---\n{self.log()[-3000:]}")
            time.sleep(0.1)
        return lines

    # --- process ----------------------------------------------------------------------------------

    def assert_running(self) -> None:
        rc = self.proc.poll()
        assert rc is None, f"daemon exited with {rc}\n--- daemon log ---\n{self.log()[-3000:]}"

    def signal(self, sig: int) -> None:
        self.assert_running()
        self.proc.send_signal(sig)

    def stop(self, timeout: float) -> tuple[int, float]:
        """SIGTERM; (exit code, seconds it took). Fails if it is still running after `timeout`."""
        started = time.monotonic()
        self.signal(signal.SIGTERM)
        try:
            rc = self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            raise AssertionError(f"daemon still running {timeout} s after SIGTERM\n"
                                 f"--- daemon log ---\n{self.log()[-3000:]}") from None
        return rc, time.monotonic() - started

    def close(self) -> None:
        """Teardown: kill whatever is left."""
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait(10)


class NotifySocket:
    """A unix datagram socket standing in for systemd's NOTIFY_SOCKET; records each message."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.messages: list[str] = []
        self._cond = threading.Condition()
        self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self._sock.bind(str(path))
        self._sock.settimeout(0.1)
        self._closed = threading.Event()
        self._thread = threading.Thread(target=self._receive, name="notify-socket", daemon=True)
        self._thread.start()

    def _receive(self) -> None:
        while not self._closed.is_set():
            try:
                data = self._sock.recv(4096)
            except TimeoutError:
                continue
            with self._cond:
                self.messages.extend(data.decode().splitlines())
                self._cond.notify_all()

    def wait_for(self, message: str, count: int = 1, timeout: float = 10) -> list[str]:
        with self._cond:
            ok = self._cond.wait_for(lambda: self.messages.count(message) >= count, timeout)
            assert ok, f"{count} x {message!r} not received in {timeout} s: {self.messages[-20:]}"
            return list(self.messages)

    def close(self) -> None:
        self._closed.set()
        self._thread.join(5)
        self._sock.close()

    def __enter__(self) -> NotifySocket:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
