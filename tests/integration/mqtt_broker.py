"""A real mosquitto broker for integration tests, which tests can stop and restart, and a
subscriber that records what it receives.

Test modules wrap `running_broker` in a three-line fixture. This is not a fixture in
tests/integration/conftest.py because that file would shadow tests/conftest.py as the module
`conftest`, from which unit tests import helpers.
"""

from __future__ import annotations

import json
import shutil
import socket
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

MOSQUITTO = shutil.which("mosquitto") or shutil.which("mosquitto", path="/usr/sbin:/usr/local/sbin")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_port(port: int, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.02)
    raise TimeoutError(f"nothing listens on 127.0.0.1:{port} after {timeout}s")


class Broker:
    """One mosquitto process on a fixed port; persistence keeps sessions across restart().
    `users` (name -> password) turns anonymous access off; `extra` is appended to its config
    (a bridge)."""

    def __init__(self, workdir: Path, users: dict[str, str] | None = None, extra: str = "") -> None:
        assert MOSQUITTO, "mosquitto not found: install the mosquitto package (./dev setup does)"
        self.port = free_port()
        self.workdir = workdir
        data = workdir / "data"
        data.mkdir()
        data.chmod(0o777)  # started as root, mosquitto drops to its own user before writing here
        self.conf = workdir / "mosquitto.conf"
        access = "allow_anonymous true\n"
        if users:
            passwords = workdir / "passwords"
            passwords.touch(mode=0o600)
            for user, password in users.items():
                subprocess.run(["mosquitto_passwd", "-b", str(passwords), user, password],
                               check=True, capture_output=True)
            # Read after mosquitto's switch of user, under the tests' private temporary folder:
            # started as root, it stays root (`user root`) to reach it.
            access = f"allow_anonymous false\npassword_file {passwords}\nuser root\n"
        self.conf.write_text(f"listener {self.port} 127.0.0.1\n{access}"
                             f"persistence true\npersistence_location {data}/\n{extra}")
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        with open(self.workdir / "mosquitto.log", "ab") as log:  # the child keeps its own copy
            self.proc = subprocess.Popen([str(MOSQUITTO), "-c", str(self.conf)], stdout=log,
                                         stderr=subprocess.STDOUT)
        wait_port(self.port)

    def stop(self) -> None:
        """SIGTERM: clients see the socket close at once, and mosquitto saves its sessions."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(10)
        self.proc = None

    def restart(self) -> None:
        self.stop()
        self.start()


@contextmanager
def running_broker(workdir: Path, **kw: Any) -> Iterator[Broker]:
    """Start a broker for one test; kill it however the test ended."""
    b = Broker(workdir, **kw)
    b.start()
    try:
        yield b
    finally:
        if b.proc is not None and b.proc.poll() is None:
            b.proc.kill()
            b.proc.wait(10)


Message = tuple[str, bytes, bool]  # topic, payload, retained


def payloads(messages: list[Message], topic: str) -> list[dict[str, Any]]:
    """JSON payloads on `topic` in arrival order, without redeliveries (delivery is at least once)."""
    out: list[dict[str, Any]] = []
    for t, raw, _ in messages:
        if t == topic and (payload := json.loads(raw)) not in out:
            out.append(payload)
    return out


class Subscriber:
    """A paho client recording (topic, payload, retained) for everything it receives."""

    def __init__(self, port: int, topic: str, client_id: str = "",
                 persistent: bool = False,
                 setup: Callable[[mqtt.Client], None] | None = None) -> None:
        self.messages: list[Message] = []
        self._cond = threading.Condition()
        self._subscribed = threading.Event()
        self._client = mqtt.Client(callback_api_version=CallbackAPIVersion.VERSION2,
                                   client_id=client_id, clean_session=not persistent)
        self._client.on_connect = lambda c, u, f, rc, p: c.subscribe(topic, qos=1)
        self._client.on_subscribe = lambda c, u, mid, rcs, p: self._subscribed.set()
        self._client.on_message = self._on_message
        self._client.reconnect_delay_set(1, 1)
        if setup is not None:  # TLS, credentials: anything to configure before connecting
            setup(self._client)
        self._client.connect("127.0.0.1", port)
        self._client.loop_start()
        assert self._subscribed.wait(5), "subscription not acknowledged"

    def _on_message(self, client: mqtt.Client, userdata: Any, msg: mqtt.MQTTMessage) -> None:
        with self._cond:
            self.messages.append((msg.topic, bytes(msg.payload), bool(msg.retain)))
            self._cond.notify_all()

    def wait_for(self, ok: Callable[[list[Message]], bool], timeout: float = 10.0) -> list[Message]:
        with self._cond:
            assert self._cond.wait_for(lambda: ok(self.messages), timeout), self.summary()
            return list(self.messages)

    def on(self, topic: str) -> list[bytes]:
        with self._cond:
            return [p for t, p, _ in self.messages if t == topic]

    def summary(self) -> str:
        """What arrived, with long payloads (snapshots) cut short, for assertion messages."""
        return "\n".join(f"{t} {p[:100]!r}{' (retained)' if r else ''}" for t, p, r in self.messages)

    def close(self) -> None:
        self._client.disconnect()
        self._client.loop_stop()


@contextmanager
def subscribed(port: int, topic: str, **kw: Any) -> Iterator[Subscriber]:
    sub = Subscriber(port, topic, **kw)
    try:
        yield sub
    finally:
        sub.close()
