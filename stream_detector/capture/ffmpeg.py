"""The ffmpeg source: a camera URL or a video file decoded by its own `ffmpeg` child process, and
what this machine's ffmpeg can do. A URL with a password reaches ffmpeg on a pipe, never on its
command line.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import subprocess
import time
from pathlib import Path
from urllib.parse import urlsplit

import numpy as np

from stream_detector.capture.child import ChildSource, Command, last_messages
from stream_detector.capture.files import DECODE_THREADS
from stream_detector.config import CameraConfig
from stream_detector.credentials import url_password
from stream_detector.errors import SourceError

log = logging.getLogger(__name__)

FFMPEG_MISSING = "ffmpeg and ffprobe, not found on PATH (install Debian's ffmpeg package)"
# What a URL given through the concat demuxer may open (the inner input inherits the list):
# network streams of every scheme the daemon reads, their TLS and their playlists' segments.
PROTOCOLS = "pipe,file,crypto,data,tcp,udp,rtp,srtp,tls,http,https,httpproxy,rtmp,rtmps,rtmpt,srt"


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



class FFmpegSource(ChildSource):
    """A camera URL or a video file, decoded by its own `ffmpeg` child process into raw BGR frames.

    Separate processes share nothing: one camera's hung open never delays another's, and a hung
    child is killed without touching the others. open() probes the size and frame rate with
    `ffprobe` and waits for the first frame, each within `open_timeout`, so a failure is a
    SourceError carrying ffmpeg's own reason. Reads wait on the pipe for at most `read_timeout`.
    RTSP goes over TCP. Files are paced here at their frame rate (`realtime`), looped by ffmpeg
    (`-stream_loop`), and their stream_time (frames / fps) keeps growing across loops. Frames keep
    the size probed at open: ffmpeg scales a mid-stream resolution change to it. A URL with a
    password is handed to ffprobe and ffmpeg as a one-line concat script on a pipe, so the process
    list shows `-i pipe:N`, never the password.
    """

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
        self._spawn(self._decode_command, self._script())
        self._pending = self._first_frame(self._read_frame, self.open_timeout)

    def _program(self) -> str:
        return "ffmpeg"

    def _input_args(self) -> list[str]:
        rtsp = urlsplit(self.uri).scheme.lower() in ("rtsp", "rtsps")
        return ["-rtsp_transport", "tcp"] if rtsp else []

    def _script(self) -> bytes:
        return concat_script(self.uri, self._input_args() + self._analysis)

    def _input(self, fd: int) -> list[str]:
        return url_input(self.uri, self._input_args(), fd, self._analysis)

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
        self._analysis = analysis

        def command(fd: int) -> list[str]:
            return ["ffprobe", "-v", "error", "-select_streams", "v:0", "-show_entries",
                    "stream=width,height,avg_frame_rate,r_frame_rate", "-of", "json",
                    *self._input(fd)]

        _, stdout, stderr = self._run(command, self._script(), self.open_timeout)
        try:
            stream = json.loads(stdout or b"{}")["streams"][0]
            width, height = int(stream.get("width", 0)), int(stream.get("height", 0))
        except (ValueError, KeyError, IndexError, TypeError, AttributeError):
            reason = last_messages(stderr, self._redact_text) or "no video stream"
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

    def _decode_command(self, fd: int) -> list[str]:
        cmd = ["ffmpeg", "-hide_banner", "-loglevel", "error", "-nostdin"]
        if self.kind == "file" and self.loop:
            cmd += ["-stream_loop", "-1"]
        if self.hwaccel:
            cmd += ["-hwaccel", self.hwaccel]
        return [*cmd, "-threads", str(DECODE_THREADS), *self._input(fd),
                "-an", "-sn", "-dn", "-map", "0:v:0",
                "-vf", f"scale={self.width}:{self.height}", "-fps_mode", "passthrough",
                "-f", "rawvideo", "-pix_fmt", "bgr24", "pipe:1"]

    def _read_frame(self, timeout: float) -> bytearray | None:
        """One frame's bytes from the pipe, or None at its end or after `timeout` seconds."""
        return self._read_exact(self.width * self.height * 3, timeout)

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
        self._frame = self._pending = None
        super().close()


def concat_script(uri: str, options: list[str]) -> bytes:
    """For a URL with a password: a concat script naming it, with the options its input needs
    (the concat demuxer opens it with these, not with the command line's); b"" without one."""
    if not url_password(uri):
        return b""
    lines = ["ffconcat version 1.0", "file " + _quoted(uri)]
    lines += [f"option {k.lstrip('-')} {v}" for k, v in zip(options[::2], options[1::2])]
    return ("\n".join(lines) + "\n").encode()


def url_input(uri: str, options: list[str], fd: int, analysis: list[str] | None = None) -> list[str]:
    """ffmpeg's input arguments for `uri`: the URL itself, or (a URL with a password) the
    `concat_script` on descriptor `fd`, so that no process list shows the password."""
    analysis = analysis or []
    if not url_password(uri):
        return [*options, *analysis, "-i", uri]
    return ["-protocol_whitelist", PROTOCOLS, *analysis, "-f", "concat", "-safe", "0",
            "-i", f"pipe:{fd}"]


def _quoted(text: str) -> str:
    """`text` as one token of an ffconcat script: single-quoted, a quote written as '\\''."""
    return "'" + text.replace("'", "'\\''") + "'"
