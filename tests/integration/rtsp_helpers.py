"""rtsp_server.py as a child process for tests: a camera URL that can die, hang and come back.

The server needs GStreamer's introspection bindings, which the system Python has and venvs lack;
GI_PYTHON names that interpreter.
"""

from __future__ import annotations

import os
import selectors
import socket
import subprocess
from pathlib import Path

import pytest

GI_PYTHON = os.environ.get("GI_PYTHON", "/usr/bin/python3")
SERVER = Path(__file__).with_name("rtsp_server.py")
GI_CHECK = ("import gi; gi.require_version('Gst', '1.0'); gi.require_version('GstRtspServer', '1.0'); "
            "from gi.repository import Gst, GstRtspServer")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def require_gi_python() -> str:
    """Fail, never skip: without the bindings no test can show that reconnects work."""
    try:
        done = subprocess.run([GI_PYTHON, "-c", GI_CHECK], capture_output=True, text=True,
                              timeout=60, check=False)
    except FileNotFoundError:
        pytest.fail(f"{GI_PYTHON} not found: the RTSP test server needs Debian's python3 with "
                    "python3-gi and gir1.2-gst-rtsp-server-1.0 (set GI_PYTHON to use another)")
    if done.returncode != 0:
        pytest.fail(f"{GI_PYTHON} cannot load GStreamer's RTSP server: install python3-gi and "
                    f"gir1.2-gst-rtsp-server-1.0 ({done.stderr.strip().splitlines()[-1:]})")
    return GI_PYTHON


class RtspServer:
    """rtsp_server.py as a child process on a fixed port, so a restart is the same camera URL."""

    def __init__(self, clip: Path, logfile: Path) -> None:
        self.port = free_port()
        self.url = f"rtsp://127.0.0.1:{self.port}/test"
        self.clip, self.logfile = clip, logfile
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self, timeout: float = 20.0) -> None:
        with open(self.logfile, "ab") as log:
            self.proc = subprocess.Popen(
                [GI_PYTHON, str(SERVER), "--port", str(self.port), "--file", str(self.clip)],
                stdout=subprocess.PIPE, stderr=log)
        assert self.proc.stdout is not None
        with selectors.DefaultSelector() as sel:
            sel.register(self.proc.stdout, selectors.EVENT_READ)
            ready = sel.select(timeout) and self.proc.stdout.readline().strip() == b"READY"
        if not ready:
            self.kill()
            pytest.fail(f"RTSP server did not start on port {self.port}: "
                        f"{self.logfile.read_text(errors='replace')[-2000:]}")

    def signal(self, sig: int) -> None:
        assert self.proc is not None
        self.proc.send_signal(sig)

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()  # works on a SIGSTOPped process too
            self.proc.wait(10)
        if self.proc is not None and self.proc.stdout is not None:
            self.proc.stdout.close()
        self.proc = None
