"""Video sources: reading files for fitting/scoring, the FrameSource protocol, and its two live
sources: OpenCV in-process, or one ffmpeg child process per camera.

The live loop that reads a FrameSource into the frame queue and owns reconnects is in camera.py.
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
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol
from urllib.parse import urlsplit, urlunsplit

import cv2
import numpy as np

from stream_detector.config import CameraConfig
from stream_detector.errors import SourceError

log = logging.getLogger("stream_detector.capture")

VIDEO_SUFFIXES = (".mp4", ".avi", ".mkv", ".mov", ".m4v", ".webm", ".mpg", ".mpeg", ".ts", ".wmv")


@dataclass(frozen=True)
class VideoInfo:
    width: int
    height: int
    fps: float  # 0 when the container does not say
    frames: int  # container's count; may be approximate, decode to be sure


class FrameSource(Protocol):
    """Anything that yields BGR frames: a file, a camera URL, a USB device or a test fake.

    grab/retrieve are split so a rate-limited reader can skip frames without converting them; all
    calls for one source come from one thread.
    """

    def open(self) -> None:
        """Connect or open; raise SourceError with a one-line reason if that is impossible."""
        ...

    def grab(self) -> bool:
        """Advance to the next frame without converting it; False at the end or on failure."""
        ...

    def retrieve(self) -> np.ndarray | None:
        """The grabbed frame as HxWx3 uint8 BGR, or None if it cannot be decoded."""
        ...

    def read(self) -> np.ndarray | None:
        """Next frame, or None when the stream ended or failed (the caller decides to reconnect)."""
        ...

    def close(self) -> None: ...

    @property
    def stream_time(self) -> float:
        """Seconds into the stream of the last grabbed frame (file position, or time since open)."""
        ...

    @property
    def finished(self) -> bool:
        """True once a finite source (a file played once) is exhausted: not a fault to retry."""
        ...


def expand_sources(paths: Sequence[str | Path]) -> list[Path]:
    """Files as given, folders as their video files in name order. Missing paths are a SourceError."""
    out: list[Path] = []
    for raw in paths:
        path = Path(raw)
        if path.is_dir():
            found = sorted(p for p in path.iterdir() if p.suffix.lower() in VIDEO_SUFFIXES)
            if not found:
                raise SourceError(f"{path}: folder holds no video files ({', '.join(VIDEO_SUFFIXES)})")
            out.extend(found)
        elif path.is_file():
            out.append(path)
        else:
            raise SourceError(f"{path}: no such file or folder")
    return out


# Decoder threads per camera in the daemon: cameras decode in parallel on their own threads, and one
# each keeps N cameras from running N x cores decoder threads that preempt each other and the model
# (measured: the single-camera live path 0.50-0.53x decode-only with FFmpeg's default, 0.55-0.56x with 1).
DECODE_THREADS = 1


def open_capture(path: Path, decode_threads: int = 0) -> cv2.VideoCapture:
    """Open a video file with OpenCV's FFmpeg backend, or raise a one-line SourceError.

    decode_threads: FFmpeg's decoding threads (0 = its default, one per core)."""
    if not path.is_file():
        raise SourceError(f"{path}: no such file")
    if not os.access(path, os.R_OK):
        raise SourceError(f"{path}: permission denied")
    params = [cv2.CAP_PROP_N_THREADS, decode_threads] if decode_threads else []
    cap = cv2.VideoCapture(str(path), cv2.CAP_FFMPEG, params)
    if not cap.isOpened():
        cap.release()
        raise SourceError(f"{path}: not a readable video")
    return cap


def video_info(path: Path) -> VideoInfo:
    cap = open_capture(path)
    try:
        ok, frame = cap.read()
        if not ok or frame is None:
            raise SourceError(f"{path}: not a readable video (no frame could be decoded)")
        fps = float(cap.get(cv2.CAP_PROP_FPS) or 0.0)
        count = int(cap.get(cv2.CAP_PROP_FRAME_COUNT) or 0)
        return VideoInfo(frame.shape[1], frame.shape[0], fps if 0 < fps < 1000 else 0.0, count)
    finally:
        cap.release()


def iter_frames(path: Path, limit: int | None = None) -> Iterator[np.ndarray]:
    """Decode every frame of a file in order (BGR uint8). The first frame must decode."""
    cap = open_capture(path)
    try:
        n = 0
        while limit is None or n < limit:
            ok, frame = cap.read()
            if not ok or frame is None:
                break
            n += 1
            yield frame
        if n == 0:
            raise SourceError(f"{path}: not a readable video (no frame could be decoded)")
    finally:
        cap.release()


# --- Live sources ---------------------------------------------------------------------------------

STREAM_SCHEMES = ("rtsp", "rtsps", "rtmp", "rtmps", "http", "https", "tcp", "udp", "rtp", "srt")
MAX_PACING_SLEEP = 1.0  # a timestamp jump in a file slows playback instead of freezing the source


def source_kind(uri: str) -> str:
    """"device" for a V4L2 index ("0"), "stream" for a network URL, else "file"."""
    if uri.isdigit():
        return "device"
    return "stream" if urlsplit(uri).scheme.lower() in STREAM_SCHEMES else "file"


def redact(uri: str) -> str:
    """The URI with any password replaced, so credentials never reach logs or error messages."""
    parts = urlsplit(uri)
    if not parts.password:
        return uri
    host = parts.hostname or ""
    netloc = f"{parts.username}:***@{host}" + (f":{parts.port}" if parts.port else "")
    return urlunsplit(parts._replace(netloc=netloc))


class LiveSource(ABC):
    """What every live source shares: where it reads, how it is paced, and its position.

    Subclasses open, grab, retrieve and close; `_pos` (stream seconds) and `_finished` are theirs
    to keep current."""

    READ_TIMEOUT_MARGIN = 2.0  # stale_after (the capture loop) decides; the reader's timeout after

    def __init__(self, uri: str, realtime: bool = True, loop: bool = False,
                 open_timeout: float = 10.0, read_timeout: float = 10.0) -> None:
        self.uri = uri
        self.kind = source_kind(uri)
        self.realtime = realtime
        self.loop = loop
        self.open_timeout = open_timeout
        self.read_timeout = read_timeout
        self._opened_at = 0.0  # monotonic time of open(): origin of live stream_time and of pacing
        self._pos = 0.0
        self._finished = False

    @property
    def name(self) -> str:
        return redact(self.uri)

    @property
    def stream_time(self) -> float:
        return self._pos

    @property
    def finished(self) -> bool:
        return self._finished

    @abstractmethod
    def grab(self) -> bool: ...

    @abstractmethod
    def retrieve(self) -> np.ndarray | None: ...

    def read(self) -> np.ndarray | None:
        return self.retrieve() if self.grab() else None

    def _pace(self) -> None:
        """A file played in realtime: wait until the grabbed frame's time has come."""
        if self.realtime and self.kind == "file":
            delay = self._opened_at + self._pos - time.monotonic()
            if delay > 0:
                time.sleep(min(delay, MAX_PACING_SLEEP))


class OpenCVSource(LiveSource):
    """A camera URL, a USB/V4L2 device index ("0") or a video file, read with OpenCV.

    Streams go through FFmpeg with open and read timeouts, so a dead or hung camera makes grab()
    fail instead of blocking forever. For RTSP, OpenCV asks FFmpeg to prefer interleaved TCP
    (rtsp_flags=prefer_tcp) unless OPENCV_FFMPEG_CAPTURE_OPTIONS is set: no UDP loss or NAT trouble.
    Files can be paced at their own frame rate (`realtime`) and looped, so a clip can stand in
    for a camera; their stream_time keeps growing across loops.
    """

    @classmethod
    def from_config(cls, camera: CameraConfig) -> OpenCVSource:
        return cls(camera.source, realtime=camera.realtime, loop=camera.loop,
                   read_timeout=camera.stale_after + cls.READ_TIMEOUT_MARGIN)

    def __init__(self, uri: str, realtime: bool = True, loop: bool = False,
                 open_timeout: float = 10.0, read_timeout: float = 10.0) -> None:
        super().__init__(uri, realtime, loop, open_timeout, read_timeout)
        self._cap: cv2.VideoCapture | None = None
        self._offset = 0.0  # looped files: length of the passes already played
        self._fps = 0.0
        self._pass_frames = 0

    def open(self) -> None:
        self.close()
        self._cap = self._open_capture()
        fps = float(self._cap.get(cv2.CAP_PROP_FPS) or 0.0)
        self._fps = fps if 0 < fps < 1000 else 0.0
        self._opened_at = time.monotonic()
        self._offset = self._pos = 0.0
        self._pass_frames = 0
        self._finished = False

    def _open_capture(self) -> cv2.VideoCapture:
        if self.kind == "file":
            return open_capture(Path(self.uri), DECODE_THREADS)
        if self.kind == "device":
            cap = cv2.VideoCapture(int(self.uri), cv2.CAP_V4L2)
            why = "missing, busy or not permitted"
        else:
            params = [cv2.CAP_PROP_OPEN_TIMEOUT_MSEC, int(self.open_timeout * 1000),
                      cv2.CAP_PROP_READ_TIMEOUT_MSEC, int(self.read_timeout * 1000),
                      cv2.CAP_PROP_N_THREADS, DECODE_THREADS]
            cap = cv2.VideoCapture(self.uri, cv2.CAP_FFMPEG, params)
            why = f"refused, unreachable within {self.open_timeout:g}s, or not a video stream"
        if not cap.isOpened():
            cap.release()
            what = f"video device {self.uri}" if self.kind == "device" else self.name
            raise SourceError(f"{what}: cannot open ({why})")
        return cap

    def grab(self) -> bool:
        if self._cap is None or self._finished:
            return False
        ok = _grab(self._cap)
        if not ok and self.kind == "file" and self.loop and self._pass_frames > 0:
            self._restart()
            ok = self._cap is not None and _grab(self._cap)
        if not ok:
            # A pass that delivered frames has ended; a pass with none, or a looped file that can
            # no longer be reopened, is a fault the capture loop reports and retries.
            self._finished = self.kind == "file" and not self.loop and self._pass_frames > 0
            return False
        self._pass_frames += 1
        self._pos = self._position()
        self._pace()
        return True

    def retrieve(self) -> np.ndarray | None:
        if self._cap is None:
            return None
        try:
            ok, frame = self._cap.retrieve()
        except cv2.error:
            return None
        return frame if ok and frame is not None else None

    def close(self) -> None:
        if self._cap is not None:
            self._cap.release()
            self._cap = None

    def _position(self) -> float:
        if self.kind != "file":
            return time.monotonic() - self._opened_at
        assert self._cap is not None
        pos = float(self._cap.get(cv2.CAP_PROP_POS_MSEC) or 0.0) / 1000.0
        if pos <= 0.0 and self._pass_frames > 1 and self._fps:  # container without timestamps
            pos = (self._pass_frames - 1) / self._fps
        return self._offset + pos

    def _restart(self) -> None:
        """Start a looped file again; reopening works for every container, seeking does not."""
        self._offset = self._pos + (1.0 / self._fps if self._fps else 0.0)
        self.close()
        try:
            self._cap = open_capture(Path(self.uri), DECODE_THREADS)
        except SourceError:
            return  # the file vanished: grab() reports the end
        self._pass_frames = 0


def _grab(cap: cv2.VideoCapture) -> bool:
    try:
        return bool(cap.grab())
    except cv2.error:
        return False


# --- FFmpeg in a child process -------------------------------------------------------------------

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


def capture_backend(camera: CameraConfig) -> str:
    """"opencv" or "ffmpeg" for a camera: `auto` picks ffmpeg for network streams when installed."""
    if camera.capture != "auto":
        return camera.capture
    return "ffmpeg" if source_kind(camera.source) == "stream" and not ffmpeg_missing() else "opencv"


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


class FrameFilter:
    """A FrameSource that wraps another and changes its frames: subclasses override `retrieve`."""

    def __init__(self, inner: FrameSource) -> None:
        self.inner = inner

    def open(self) -> None:
        self.inner.open()

    def grab(self) -> bool:
        return self.inner.grab()

    def retrieve(self) -> np.ndarray | None:
        return self.inner.retrieve()

    def read(self) -> np.ndarray | None:
        return self.retrieve() if self.grab() else None

    def close(self) -> None:
        self.inner.close()

    @property
    def stream_time(self) -> float:
        return self.inner.stream_time

    @property
    def finished(self) -> bool:
        return self.inner.finished


class ResizedSource(FrameFilter):
    """A FrameSource whose frames are resized right after decoding (a camera's `width`/`height`).

    Cuts the memory and copying of high-resolution streams before the queue; event boxes and
    snapshots are then in these pixels.
    """

    def __init__(self, inner: FrameSource, width: int, height: int) -> None:
        super().__init__(inner)
        self.size = (width, height)

    def retrieve(self) -> np.ndarray | None:
        frame = self.inner.retrieve()
        if frame is None or (frame.shape[1], frame.shape[0]) == self.size:
            return frame
        try:
            return cv2.resize(frame, self.size, interpolation=cv2.INTER_AREA)
        except (cv2.error, MemoryError):  # a frame that cannot be resized counts as undecodable
            return None
