"""A real mosquitto broker for integration tests, which tests can stop and restart.

Test modules wrap `running_broker` in a three-line fixture. This is not a fixture in
tests/integration/conftest.py because that file would shadow tests/conftest.py as the module
`conftest`, from which tests/unit/test_model.py imports helpers.
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

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
    """One mosquitto process on a fixed port; persistence keeps sessions across restart()."""

    def __init__(self, workdir: Path) -> None:
        assert MOSQUITTO, "mosquitto not found: install the mosquitto package (./dev setup does)"
        self.port = free_port()
        self.workdir = workdir
        data = workdir / "data"
        data.mkdir()
        data.chmod(0o777)  # started as root, mosquitto drops to its own user before writing here
        self.conf = workdir / "mosquitto.conf"
        self.conf.write_text(f"listener {self.port} 127.0.0.1\nallow_anonymous true\n"
                             f"persistence true\npersistence_location {data}/\n")
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
def running_broker(workdir: Path) -> Iterator[Broker]:
    """Start a broker for one test; kill it however the test ended."""
    b = Broker(workdir)
    b.start()
    try:
        yield b
    finally:
        if b.proc is not None and b.proc.poll() is None:
            b.proc.kill()
            b.proc.wait(10)
