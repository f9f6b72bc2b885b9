"""The ffmpeg source: a camera URL or a video file decoded by its own `ffmpeg` child process, and
what this machine's ffmpeg can do.
"""

from __future__ import annotations

import json
import logging
import os
import re
import selectors
import shutil
import subprocess
import threading
import time
from collections.abc import Callable
from pathlib import Path
from urllib.parse import urlsplit

import numpy as np

from stream_detector.capture.files import DECODE_THREADS
from stream_detector.capture.source import LiveSource
from stream_detector.config import CameraConfig
from stream_detector.errors import SourceError

log = logging.getLogger(__name__)

FFMPEG_MISSING = "ffmpeg and ffprobe, not found on PATH (install Debian's ffmpeg package)"
_CREDENTIALS = re.compile(r"(://[^/:@\s]*:)[^@\s/]*@")
_LOG_PREFIX = re.compile(r"^\[[^\]]* @ 0x[0-9a-f]+\] ")


def ffmpeg_missing() -> str:
    """Empty when ffmpeg and ffprobe are on PATH, else the one-line reason."""
    return "" if shutil.which("ffmpeg") and shutil.which("ffprobe") else FFMPEG_MISSING


def ffmpeg_hwaccels() -> list[str]:
    """The -hwaccel methods this ffmpeg build knows (`ffmpeg -hwaccels`); empty if it cannot say."""
    try:
        done = subprocess.run(["ffmpeg", "-hide_banner", "-hwaccels"], stdin=subprocess.DEVNULL,
                              capture_output=True, text=True, timeout=10, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return []
    return done.stdout.split()[3:] if done.returncode == 0 else []  # after "... methods:"



class _StderrTail(threading.Thread):
    """Drains a child's stderr so it can never block on a full pipe; keeps the end for messages."""

    KEEP = 4096

    def __init__(self, fd: int, redact_text: Callable[[str], str]) -> None:
        super().__init__(name="ffmpeg-stderr", daemon=True)  # only reads a pipe: safe at exit
        self.fd = fd
        self.redact_text = redact_text
        self._tail = b""
        self._lock = threading.Lock()

    def run(self) -> None:
        while True:
            try:
                chunk = os.read(self.fd, 4096)
            except OSError:
                return
            if not chunk:
                return
            with self._lock:
                self._tail = (self._tail + chunk)[-self.KEEP:]

    def reason(self) -> str:
        """ffmpeg's last messages on one line, credentials hidden; empty if it said nothing."""
        with self._lock:
            return last_messages(self._tail, self.redact_text)


def last_messages(stderr: bytes, redact_text: Callable[[str], str]) -> str:
    """The last two lines a child wrote to stderr as one printable line, without FFmpeg's
    "[tcp @ 0x...]" prefixes, passed through `redact_text`, at most 300 characters."""
    text = stderr[-_StderrTail.KEEP:].decode("utf-8", "replace")
    lines = [_LOG_PREFIX.sub("", line).strip() for line in re.split(r"[\r\n]+", text)]
    lines = ["".join(c if c.isprintable() else " " for c in line) for line in lines if line]
    joined = redact_text("; ".join(lines[-2:]))
    return joined if len(joined) <= 300 else joined[:297] + "..."


class FFmpegSource(LiveSource):
    """A camera URL or a video file, decoded by its own `ffmpeg` child process into raw BGR frames.

    OpenCV opens captures one at a time, so one camera's hung open delays every other camera;
    separate processes share nothing, and a hung child is killed without touching the others.
    open() probes the size and frame rate with `ffprobe` and waits for the first frame, each within
    `open_timeout`, so a failure is a SourceError carrying ffmpeg's own reason. Reads wait on the
    pipe for at most `read_timeout`. RTSP goes over TCP. Files are paced here at their frame rate
    (`realtime`), looped by ffmpeg (`-stream_loop`), and their stream_time (frames / fps) keeps
    growing across loops. Frames keep the size probed at open: ffmpeg scales a mid-stream
    resolution change to it. The URL, password included, is on ffmpeg's command line: local users
    can see it in the process list, as with any tool that takes the URL as an argument.
    """

    KILL_AFTER = 1.0  # seconds between SIGTERM and SIGKILL when closing
    QUICK_ANALYSIS = 0.5  # seconds of a network stream analysed before the first probe answers

    @classmethod
    def from_config(cls, camera: CameraConfig) -> FFmpegSource:
        return cls(camera.source, realtime=camera.realtime, loop=camera.loop,
                   read_timeout=camera.stale_after + cls.READ_TIMEOUT_MARGIN,
                   hwaccel=camera.hwaccel)

    def __init__(self, uri: str, realtime: bool = True, loop: bool = False,
                 open_timeout: float = 10.0, read_timeout: float = 10.0, hwaccel: str = "") -> None:
        super().__init__(uri, realtime, loop, open_timeout, read_timeout)
        self.hwaccel = hwaccel
        self.width = self.height = 0
        self.fps = 0.0
        self._proc: subprocess.Popen[bytes] | None = None
        self._stderr: _StderrTail | None = None
        self._selector: selectors.BaseSelector | None = None
        self._frame: bytearray | None = None  # the grabbed frame's bytes
        self._pending: bytearray | None = None  # the first frame, read by open()
        self._frames = 0  # grabbed since open, across loops
        self._analysis: list[str] = []  # ffmpeg's analysis options, as the probe found enough

    def open(self) -> None:
        self.close()
        self._finished = False
        self._frames, self._pos = 0, 0.0
        if self.kind == "device":
            raise SourceError(f"video device {self.uri}: ffmpeg capture reads files and streams only")
        if self.kind == "file":
            path = Path(self.uri)
            if not path.is_file():
                raise SourceError(f"{self.uri}: no such file")
            if not os.access(path, os.R_OK):
                raise SourceError(f"{self.uri}: permission denied")
        if missing := ffmpeg_missing():
            raise SourceError(f"{self.name}: ffmpeg capture needs {missing}")
        self.width, self.height, self.fps = self._probe()
        self._start()
        frame = self._read_frame(self.open_timeout)
        if frame is None:
            reason = (self._stop_reason(self._exit_status())
                      or f"no frame within {self.open_timeout:g}s")
            self.close()
            raise SourceError(f"{self._what()} ({reason})")
        self._pending = frame
        self._opened_at = time.monotonic()

    def _what(self) -> str:
        return f"{self.name}: " + ("not a readable video" if self.kind == "file" else "cannot open")

    def _input_args(self) -> list[str]:
        rtsp = urlsplit(self.uri).scheme.lower() in ("rtsp", "rtsps")
        return ["-rtsp_transport", "tcp"] if rtsp else []

    def _probe(self) -> tuple[int, int, float]:
        """(width, height, fps) of the first video stream, within open_timeout.

        A network stream is first probed over QUICK_ANALYSIS seconds of packets: its size is in
        the parameter sets that start it (an RTSP test camera: 0.9 s instead of 2.9 s, and as much
        again saved on ffmpeg's own start), and its frame rate is not needed (a stream's time is
        wall time). If that does not tell the size, the stream is probed again for FFmpeg's
        default analysis, and ffmpeg then analyses as long."""
        self._analysis = []
        if self.kind == "stream":
            quick = ["-analyzeduration", str(int(self.QUICK_ANALYSIS * 1e6))]
            found = self._probe_with(quick, final=False)
            if found is not None:
                self._analysis = quick
                return found
        found = self._probe_with([], final=True)
        assert found is not None
        return found

    def _probe_with(self, analysis: list[str], final: bool) -> tuple[int, int, float] | None:
        """One ffprobe run; None when it found a video stream but not its size (unless `final`)."""
        cmd = ["ffprobe", "-v", "error", *self._input_args(), *analysis, "-select_streams", "v:0",
               "-show_entries", "stream=width,height,avg_frame_rate,r_frame_rate", "-of", "json",
               "-i", self.uri]
        try:
            done = subprocess.run(cmd, stdin=subprocess.DEVNULL, capture_output=True,
                                  timeout=self.open_timeout, check=False, start_new_session=True)
        except subprocess.TimeoutExpired:  # run() has killed and reaped it
            raise SourceError(f"{self._what()} (no answer within {self.open_timeout:g}s)") from None
        except OSError as exc:
            raise SourceError(f"{self.name}: cannot run ffprobe ({exc.strerror})") from None
        try:
            stream = json.loads(done.stdout or b"{}")["streams"][0]
            width, height = int(stream.get("width", 0)), int(stream.get("height", 0))
        except (ValueError, KeyError, IndexError, TypeError, AttributeError):
            reason = last_messages(done.stderr, self._redact_text) or "no video stream"
            raise SourceError(f"{self._what()} ({reason})") from None
        if not final and (width <= 0 or height <= 0):
            return None  # a video stream whose size the brief look did not tell: look longer
        if not (0 < width <= 16384 and 0 < height <= 16384):
            raise SourceError(f"{self._what()} (frame size {width}x{height})")
        fps = 0.0
        for key in ("avg_frame_rate", "r_frame_rate"):
            num, _, den = str(stream.get(key, "0/0")).partition("/")
            try:
                fps = float(num) / float(den or 1)
            except (ValueError, ZeroDivisionError):
                continue
            if 0 < fps < 1000:
                break
            fps = 0.0
        return width, height, fps

    def _start(self) -> None:
        cmd = ["ffmpeg", "-hide_banner", "-loglevel", "error", "-nostdin"]
        if self.kind == "file" and self.loop:
            cmd += ["-stream_loop", "-1"]
        if self.hwaccel:
            cmd += ["-hwaccel", self.hwaccel]
        cmd += ["-threads", str(DECODE_THREADS), *self._input_args(), *self._analysis,
                "-i", self.uri,
                "-an", "-sn", "-dn", "-map", "0:v:0",
                "-vf", f"scale={self.width}:{self.height}", "-fps_mode", "passthrough",
                "-f", "rawvideo", "-pix_fmt", "bgr24", "pipe:1"]
        try:
            # Its own session: a terminal's Ctrl-C goes to the daemon, which then closes the child.
            proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                    stderr=subprocess.PIPE, bufsize=0, start_new_session=True)
        except OSError as exc:
            raise SourceError(f"{self.name}: cannot run ffmpeg ({exc.strerror})") from None
        assert proc.stdout is not None and proc.stderr is not None
        self._proc = proc
        os.set_blocking(proc.stdout.fileno(), False)
        self._selector = selectors.DefaultSelector()
        self._selector.register(proc.stdout.fileno(), selectors.EVENT_READ)
        self._stderr = _StderrTail(proc.stderr.fileno(), self._redact_text)
        self._stderr.start()

    def _read_frame(self, timeout: float) -> bytearray | None:
        """One frame's bytes from the pipe, or None at its end or after `timeout` seconds."""
        if self._proc is None or self._selector is None:
            return None
        assert self._proc.stdout is not None
        fd, size = self._proc.stdout.fileno(), self.width * self.height * 3
        buf, got = bytearray(size), 0
        deadline = time.monotonic() + timeout
        while got < size:
            try:
                chunk = os.read(fd, size - got)
            except BlockingIOError:
                left = deadline - time.monotonic()
                if left <= 0 or not self._selector.select(left):
                    if time.monotonic() >= deadline:
                        return None
                continue
            except OSError:
                return None
            if not chunk:
                return None  # ffmpeg exited or closed its output
            buf[got:got + len(chunk)] = chunk
            got += len(chunk)
        return buf

    def _exit_status(self) -> int | None:
        """The child's exit status, waiting briefly for it to exit; None while it runs."""
        if self._proc is None:
            return None
        try:
            return self._proc.wait(0.5)
        except subprocess.TimeoutExpired:
            return None

    def _stop_reason(self, code: int | None) -> str:
        """Why the child that exited with `code` stopped, in ffmpeg's words ("" while it runs)."""
        if code is None:
            return ""
        if self._stderr is not None:
            self._stderr.join(0.5)  # its last words may still be in the pipe
        said = self._stderr.reason() if self._stderr is not None else ""
        return said or f"ffmpeg exited with status {code}"

    def grab(self) -> bool:
        if self._proc is None or self._finished:
            return False
        frame, self._pending = self._pending, None
        if frame is None:
            frame = self._read_frame(self.read_timeout)
        if frame is None:
            code = self._exit_status()
            # The end of a file played once; anything else is a fault the capture loop retries.
            once = self.kind == "file" and not self.loop
            self._finished = once and code == 0 and self._frames > 0
            if not self._finished:
                log.info("source %s: ffmpeg delivered no frame (%s)", self.name,
                         self._stop_reason(code) or f"nothing for {self.read_timeout:g}s")
            return False
        self._frame = frame
        self._frames += 1
        if self.kind == "file" and self.fps:
            self._pos = (self._frames - 1) / self.fps
        else:
            self._pos = time.monotonic() - self._opened_at
        self._pace()
        return True

    def retrieve(self) -> np.ndarray | None:
        if self._frame is None:
            return None
        return np.frombuffer(self._frame, np.uint8).reshape(self.height, self.width, 3)

    def close(self) -> None:
        """Stop the child and reap it: no zombie, no orphan left decoding."""
        proc, self._proc = self._proc, None
        self._frame = self._pending = None
        if self._selector is not None:
            self._selector.close()
            self._selector = None
        if proc is None:
            return
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(self.KILL_AFTER)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        if self._stderr is not None:
            self._stderr.join(1.0)  # the child is gone, so its stderr ends now
            self._stderr = None
        for pipe in (proc.stdout, proc.stderr):
            if pipe is not None:
                pipe.close()

    def _redact_text(self, text: str) -> str:
        return _CREDENTIALS.sub(r"\1***@", text.replace(self.uri, self.name))

