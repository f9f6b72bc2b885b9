"""Recording for event clips: each camera's recent video as short MPEG-TS segments in a bounded ring
on disk, written by an ffmpeg process that copies a network camera's stream (no re-encode) or that
encodes the frames the daemon already holds (files, USB devices, the demo) at a modest size and rate.
"""

from __future__ import annotations

import collections
import logging
import os
import signal
import subprocess
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

import cv2
import numpy as np

from stream_detector.capture.child import StderrTail
from stream_detector.capture.ffmpeg import concat_script, ffmpeg_missing, url_input
from stream_detector.capture.loop import Backoff, FrameReceiver
from stream_detector.capture.source import redact, source_kind
from stream_detector.credentials import Scrubber, url_password
from stream_detector.messages import Frame, StreamState

log = logging.getLogger(__name__)

SEGMENT_SECONDS = 2.0  # a clip is cut from whole segments: at most this much more on either side
CLIP_LONG_SIDE = 480  # encoded clips (not stream copies) are at most this wide or high
CLIP_MAX_FPS = 15.0
STALL_AFTER = 4 * SEGMENT_SECONDS + 10  # no segment finished for this long: ffmpeg is restarted


@dataclass(frozen=True)
class Segment:
    path: Path
    start: float  # wall time of its first frame (epoch seconds)
    end: float  # wall time it was finished


class SegmentRing:
    """The finished segments of one camera, oldest first: those older than `keep` seconds are
    deleted by `prune` unless an open event pinned them (its clip starts there). Thread-safe."""

    def __init__(self, directory: Path, keep: float, clock: Callable[[], float] = time.time) -> None:
        self.directory = directory
        self.keep = keep
        self.clock = clock
        self._segments: collections.deque[Segment] = collections.deque()
        self._pins: dict[str, float] = {}
        self._lock = threading.Lock()

    def clear(self) -> None:
        """Delete what an earlier run left (its index died with it)."""
        if self.directory.is_dir():
            for p in self.directory.glob("*.ts"):
                p.unlink(missing_ok=True)

    def add(self, segment: Segment) -> None:
        with self._lock:
            self._segments.append(segment)

    def covering(self, t0: float, t1: float) -> list[Segment]:
        """The segments that hold any of [t0, t1], in order."""
        with self._lock:
            return [s for s in self._segments if s.end > t0 and s.start < t1]

    def newest_end(self) -> float | None:
        with self._lock:
            return self._segments[-1].end if self._segments else None

    def pin(self, key: str, since: float) -> None:
        with self._lock:
            self._pins[key] = since

    def unpin(self, key: str) -> None:
        with self._lock:
            self._pins.pop(key, None)

    def prune(self) -> int:
        """Delete segments that ended more than `keep` s ago and that no open event still needs."""
        cutoff = self.clock() - self.keep
        gone = []
        with self._lock:
            if self._pins:
                cutoff = min(cutoff, min(self._pins.values()))
            while self._segments and self._segments[0].end < cutoff:
                gone.append(self._segments.popleft())
        for s in gone:
            s.path.unlink(missing_ok=True)
        return len(gone)

    def size_bytes(self) -> int:
        with self._lock:
            paths = [s.path for s in self._segments]
        return sum(p.stat().st_size for p in paths if p.exists())


RecorderState = Callable[[str, bool], None]  # (camera, recording) on every change: a gauge


class _Segmenter:
    """One ffmpeg process writing segments into a ring; it lists each finished segment on its
    stdout, a pipe to us, so it also dies at its next segment after the daemon is killed.
    `secret` (a camera URL with its password, as a concat script) reaches it on a pipe whose
    descriptor `cmd` is given, never on its command line."""

    def __init__(self, cmd: Callable[[int], list[str]], ring: SegmentRing, stdin: bool,
                 redact_text: Callable[[str], str], secret: bytes = b"") -> None:
        ring.directory.mkdir(parents=True, exist_ok=True)
        self.ring = ring
        read_fd, write_fd = os.pipe()
        try:
            os.write(write_fd, secret)  # far below a pipe's 64 KiB: never blocks
            os.close(write_fd)
            self.proc = subprocess.Popen(cmd(read_fd),
                                         stdin=subprocess.PIPE if stdin else subprocess.DEVNULL,
                                         stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                         pass_fds=(read_fd,), start_new_session=True)
        finally:
            os.close(read_fd)
        assert self.proc.stdout is not None and self.proc.stderr is not None
        self.stderr = StderrTail(self.proc.stderr.fileno(), redact_text)
        self.stderr.start()
        self.last = time.monotonic()  # start, or the last segment finished
        self.segments = 0
        self._lines = threading.Thread(target=self._read, name="ffmpeg-segments", daemon=True)
        self._lines.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for raw in self.proc.stdout:  # "name,start,end" per finished segment (stream seconds)
            try:
                name, start, end = raw.decode().strip().rsplit(",", 2)
                length = max(0.0, float(end) - float(start))
            except ValueError:
                continue
            now = time.time()
            self.ring.add(Segment(self.ring.directory / Path(name).name, now - length, now))
            self.last = time.monotonic()
            self.segments += 1

    def alive(self) -> bool:
        return self.proc.poll() is None

    def reason(self) -> str:
        code = self.proc.poll()
        return self.stderr.reason() or (f"ffmpeg exited with status {code}" if code is not None
                                         else "")

    def stop(self, timeout: float = 3.0) -> None:
        """Let ffmpeg finish its last segment (EOF on its input, or SIGINT), then make sure."""
        if self.proc.stdin is not None:
            try:
                self.proc.stdin.close()
            except OSError:
                pass
        elif self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
        try:
            self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self._lines.join(1.0)
        self.stderr.join(1.0)
        for pipe in (self.proc.stdout, self.proc.stderr):
            if pipe is not None:
                pipe.close()


def _segment_args(ring: SegmentRing) -> list[str]:
    pattern = ring.directory / f"{int(time.time() * 1000)}-%06d.ts"  # unique per process
    return ["-f", "segment", "-segment_time", f"{SEGMENT_SECONDS:g}", "-segment_format", "mpegts",
            "-reset_timestamps", "1", "-segment_list", "pipe:1", "-segment_list_type", "csv",
            str(pattern)]


class Recorder(threading.Thread):
    """A camera's recorder thread: keeps its ffmpeg segmenter running, restarting it with backoff;
    each change between recording and failing is logged once and reported to `state`. Nothing
    else waits on it: scoring and events go on whatever it does."""

    def __init__(self, camera: str, ring: SegmentRing, state: RecorderState,
                 backoff: Backoff | None = None) -> None:
        super().__init__(name=f"record-{camera}", daemon=True)
        self.camera = camera
        self.ring = ring
        self.state = state
        self.backoff = backoff or Backoff(1.0, 30.0)
        self.stop_event = threading.Event()
        self.failures = 0
        self._up: bool | None = None
        self._proc: _Segmenter | None = None

    def stop(self, timeout: float = 3.0) -> None:
        """Stop recording; the segment being written is finished and listed first."""
        self.stop_event.set()
        self.join(timeout + 1.0)

    def _went(self, up: bool, why: str = "") -> None:
        if up is self._up:
            return
        if up:
            log.info("camera %s: recording for clips", self.camera)
        else:
            self.failures += 1
            log.warning("camera %s: recording failed (%s); events go on without clips until it "
                        "is back", self.camera, why or "ffmpeg stopped")
        self._up = up
        self.state(self.camera, up)

    def _watch(self, proc: _Segmenter) -> str:
        """Wait while `proc` records; returns why it stopped ("" when asked to)."""
        while not self.stop_event.wait(0.5):
            if not proc.alive():
                return proc.reason() or "ffmpeg exited"
            if proc.segments:
                self._went(True)
                self.backoff.reset()
            if time.monotonic() - proc.last > STALL_AFTER:
                return f"no segment for {STALL_AFTER:g}s"
        return ""


class StreamRecorder(Recorder):
    """A network camera's stream copied into segments by its own ffmpeg: no decoding, no
    encoding. A URL with a password reaches ffmpeg on a pipe, as the capture's ffmpeg gets it."""

    def __init__(self, camera: str, url: str, ring: SegmentRing, state: RecorderState,
                 backoff: Backoff | None = None) -> None:
        super().__init__(camera, ring, state, backoff)
        self.url = url
        self._scrub = Scrubber([url_password(url)])

    def _options(self) -> list[str]:
        rtsp = urlsplit(self.url).scheme.lower() in ("rtsp", "rtsps")
        return ["-rtsp_transport", "tcp"] if rtsp else []

    def command(self, fd: int) -> list[str]:
        """ffmpeg's argv; `fd`: the descriptor the URL's concat script is on (if it has one)."""
        return ["ffmpeg", "-hide_banner", "-loglevel", "error", "-nostdin",
                *url_input(self.url, self._options(), fd),
                "-map", "0:v:0", "-c", "copy", *_segment_args(self.ring)]

    def _redact_text(self, text: str) -> str:
        return self._scrub(text.replace(self.url, redact(self.url)))

    def run(self) -> None:
        while not self.stop_event.is_set():
            try:
                proc = _Segmenter(self.command, self.ring, False, self._redact_text,
                                  concat_script(self.url, self._options()))
            except OSError as exc:
                why = f"cannot run ffmpeg ({exc.strerror})"
            else:
                self._proc = proc
                why = self._watch(proc)
                proc.stop()
            if self.stop_event.is_set():
                break
            self._went(False, why)
            self.stop_event.wait(self.backoff.next())


class FrameRecorder(Recorder):
    """Encodes the frames a camera's capture hands on (`offer`, from the capture thread: never
    blocks) at most CLIP_LONG_SIDE pixels and `fps` frames/s, with wall-clock timestamps."""

    def __init__(self, camera: str, ring: SegmentRing, state: RecorderState, fps: float,
                 backoff: Backoff | None = None) -> None:
        super().__init__(camera, ring, state, backoff)
        self.fps = min(CLIP_MAX_FPS, max(1.0, fps))
        self._frames: collections.deque[np.ndarray] = collections.deque(maxlen=8)
        self._ready = threading.Event()
        self._size: tuple[int, int] | None = None
        self._retry_at = 0.0  # monotonic time before which a failed encoder is not restarted

    def offer(self, frame: Frame) -> None:
        self._frames.append(frame.image)  # the oldest waiting frame goes when the encoder lags
        self._ready.set()

    def command(self, width: int, height: int) -> list[str]:
        return ["ffmpeg", "-hide_banner", "-loglevel", "error", "-f", "rawvideo",
                "-pix_fmt", "bgr24", "-s", f"{width}x{height}", "-framerate", "1000",
                "-use_wallclock_as_timestamps", "1", "-i", "pipe:0", "-an",
                "-c:v", "libx264", "-preset", "veryfast", "-tune", "zerolatency", "-crf", "28",
                "-pix_fmt", "yuv420p", "-fps_mode", "cfr", "-r", f"{self.fps:g}",
                "-force_key_frames", f"expr:gte(t,n_forced*{SEGMENT_SECONDS:g})",
                *_segment_args(self.ring)]

    def run(self) -> None:
        why = ""
        while not self.stop_event.is_set():
            if not self._ready.wait(0.5):
                why = self._check(why)
                continue
            self._ready.clear()
            while self._frames and not self.stop_event.is_set():
                why = self._encode(self._frames.popleft()) or why
        if self._proc is not None:
            self._proc.stop()

    def _check(self, why: str) -> str:
        proc = self._proc
        if proc is not None and not proc.alive():
            why = proc.reason() or "ffmpeg exited"
            proc.stop()
            self._proc = None
            self._went(False, why)
        elif proc is not None and proc.segments:
            self._went(True)
        return why

    def _encode(self, image: np.ndarray) -> str:
        h, w = image.shape[:2]
        scale = min(1.0, CLIP_LONG_SIDE / max(w, h))
        size = (max(2, int(w * scale) // 2 * 2), max(2, int(h * scale) // 2 * 2))
        if self._proc is not None and (size != self._size or not self._proc.alive()):
            self._proc.stop()  # a new size needs a new encoder; a dead one is replaced
            self._proc = None
        if self._proc is None:
            if time.monotonic() < self._retry_at:
                return ""
            try:
                self._proc = _Segmenter(lambda _: self.command(*size), self.ring, True,
                                        lambda t: t)
                self._size = size
            except OSError as exc:
                return self._failed(f"cannot run ffmpeg ({exc.strerror})")
        if size != (w, h):
            image = cv2.resize(image, size, interpolation=cv2.INTER_AREA)
        stdin = self._proc.proc.stdin
        assert stdin is not None
        try:
            stdin.write(np.ascontiguousarray(image).tobytes())
        except (BrokenPipeError, OSError):
            return self._failed(self._proc.reason() or "ffmpeg stopped reading")
        if self._proc.segments:
            self._went(True)
            self.backoff.reset()
        return ""

    def _failed(self, why: str) -> str:
        if self._proc is not None:
            self._proc.stop()
            self._proc = None
        self._went(False, why)
        self._retry_at = time.monotonic() + self.backoff.next()
        return why


class FrameTee:
    """A capture loop's receiver that also hands each frame to a FrameRecorder (its frame queue
    still decides what is dropped)."""

    def __init__(self, inner: FrameReceiver, recorder: FrameRecorder) -> None:
        self.inner = inner
        self.recorder = recorder

    def put(self, item: Frame | StreamState) -> bool:
        if isinstance(item, Frame):
            self.recorder.offer(item)
        return self.inner.put(item)


def recording_kind(source: str) -> str:
    """"copy" for network streams (the stream itself is kept), "frames" for files, USB devices
    and the demo (its frames are encoded), "" when this machine has no ffmpeg."""
    if ffmpeg_missing():
        return ""
    return "copy" if source_kind(source) == "stream" else "frames"


def clip_dir(storage: str | Path) -> Path:
    return Path(storage) / "clips"


def ring_dir(storage: str | Path, camera: str) -> Path:
    return Path(storage) / "recordings" / camera
