"""Event clips: once an event has ended and `post_capture` seconds have been recorded, its camera's
segments from `pre_capture` s before its start are joined into one MP4 without re-encoding, written
under a temporary name and renamed, so a clip is whole or absent (thread "clips").
"""

from __future__ import annotations

import logging
import os
import subprocess
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from stream_detector.capture import SEGMENT_SECONDS, Segment, SegmentRing
from stream_detector.messages import Event

log = logging.getLogger(__name__)

ASSEMBLY_TIMEOUT = 60.0  # seconds one join may take (a copy: normally well under a second)
LATE = 2 * SEGMENT_SECONDS + 5  # after the due time, how long to wait for the last segment


@dataclass(frozen=True)
class ClipResult:
    """A clip made (path set) or not (None: no recording, or it failed) for an ended event."""

    event_id: str
    camera: str
    path: str | None
    start: float | None = None  # wall time of its first frame
    end: float | None = None  # wall time of its last


@dataclass
class _Camera:
    ring: SegmentRing
    pre: float
    post: float


@dataclass
class _Pending:
    event: Event
    due: float  # wall time: the clip ends here (end + post_capture)
    deadline: float  # wall time: make it from what there is
    done: Callable[[ClipResult], None]


def assemble(segments: list[Segment], out: Path) -> None:
    """Join `segments` into the MP4 `out` by stream copy; `out` appears only when complete."""
    listing = out.with_name(f".{out.stem}.txt")
    tmp = out.with_name(f".{out.name}.tmp")
    # Absolute paths: ffmpeg reads a relative entry relative to the listing's folder, and the
    # storage path may be relative (the embedded default's var/stream-detector).
    listing.write_text("".join("file '{}'\n".format(str(s.path.absolute()).replace("'", "'\\''"))
                               for s in segments))
    try:
        done = subprocess.run(
            ["ffmpeg", "-hide_banner", "-loglevel", "error", "-nostdin", "-f", "concat",
             "-safe", "0", "-i", str(listing), "-map", "0:v", "-c", "copy",
             "-movflags", "+faststart", "-f", "mp4", "-y", str(tmp)],
            stdin=subprocess.DEVNULL, capture_output=True, timeout=ASSEMBLY_TIMEOUT, check=False)
        if done.returncode != 0 or not tmp.is_file() or tmp.stat().st_size == 0:
            why = done.stderr.decode("utf-8", "replace").strip().splitlines()
            raise OSError(why[-1] if why else f"ffmpeg exited with status {done.returncode}")
        with open(tmp, "rb") as fh:
            os.fsync(fh.fileno())  # the rename must not publish a clip the disk has not got
        os.replace(tmp, out)
    except subprocess.TimeoutExpired:
        raise OSError(f"joining took over {ASSEMBLY_TIMEOUT:g}s") from None
    finally:
        tmp.unlink(missing_ok=True)
        listing.unlink(missing_ok=True)


class Clipper(threading.Thread):
    """Makes each ended event's clip when its post-capture is on disk (or at the latest LATE s
    after), reports it through the `done` callback given with it, and prunes every camera's ring.

    Called from the writer thread: `camera`, `begin`, `finish`, `hurry`; `failed(camera)` counts a
    clip that could not be made; a failure is logged once until a clip succeeds again.
    """

    def __init__(self, directory: Path, failed: Callable[[str], None] = lambda camera: None,
                 beat: Callable[[], None] = lambda: None, clock: Callable[[], float] = time.time,
                 join: Callable[[list[Segment], Path], None] = assemble) -> None:
        super().__init__(name="clips", daemon=True)
        self.directory = directory
        self.failed = failed
        self.beat = beat
        self.clock = clock
        self.join_segments = join
        self._cameras: dict[str, _Camera] = {}
        self._pending: list[_Pending] = []
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._closing = threading.Event()
        self._ok = True

    def clean(self) -> None:
        """Delete half-made clips a killed run left (temporary names, never served)."""
        if self.directory.is_dir():
            for p in self.directory.glob(".*"):
                p.unlink(missing_ok=True)

    def camera(self, name: str, ring: SegmentRing | None, pre: float = 5.0,
               post: float = 5.0) -> None:
        """A camera's recording (None: it keeps no clips)."""
        with self._lock:
            if ring is None:
                self._cameras.pop(name, None)
            else:
                self._cameras[name] = _Camera(ring, pre, post)

    def records(self, camera: str) -> bool:
        with self._lock:
            return camera in self._cameras

    def begin(self, event: Event) -> None:
        """An event started: keep its camera's segments from `pre_capture` before its start."""
        with self._lock:
            cam = self._cameras.get(event.camera)
        if cam is not None:
            cam.ring.pin(event.id, event.start_wall - cam.pre - SEGMENT_SECONDS)

    def finish(self, event: Event, done: Callable[[ClipResult], None]) -> None:
        """An event ended: its clip is made once `post_capture` is recorded; then `done(result)`."""
        with self._lock:
            cam = self._cameras.get(event.camera)
            end = event.end_wall if event.end_wall is not None else self.clock()
            due = end + (cam.post if cam else 0.0)
            self._pending.append(_Pending(event, due, due + LATE, done))
        self._wake.set()

    def hurry(self, camera: str | None = None) -> None:
        """Make the camera's pending clip (every camera's: None) from what is recorded now: its
        next event has started, or the daemon stops."""
        now = self.clock()
        with self._lock:
            for p in self._pending:
                if camera is None or p.event.camera == camera:
                    p.due = p.deadline = min(p.deadline, now)
        self._wake.set()

    def pending(self) -> int:
        with self._lock:
            return len(self._pending)

    def close(self, timeout: float = 10.0) -> None:
        self.hurry()
        self._closing.set()
        self._wake.set()
        self.join(timeout)

    def run(self) -> None:
        next_prune = 0.0
        while True:
            self.beat()
            self._make_due()
            if self._closing.is_set() and not self.pending():
                return
            if time.monotonic() >= next_prune:
                next_prune = time.monotonic() + 1.0
                with self._lock:
                    rings = [c.ring for c in self._cameras.values()]
                for ring in rings:
                    ring.prune()
            self._wake.wait(0.25)
            self._wake.clear()

    def _make_due(self) -> None:
        now = self.clock()
        with self._lock:
            due = []
            for p in self._pending:
                cam = self._cameras.get(p.event.camera)
                newest = cam.ring.newest_end() if cam else None
                if now >= p.deadline or cam is None or (newest is not None and newest >= p.due):
                    due.append((p, cam))
            self._pending = [p for p in self._pending if all(p is not d for d, _ in due)]
        for p, cam in due:
            result = self._make(p, cam)
            if cam is not None:
                cam.ring.unpin(p.event.id)
            p.done(result)

    def _make(self, p: _Pending, cam: _Camera | None) -> ClipResult:
        ev = p.event
        if cam is None:
            return ClipResult(ev.id, ev.camera, None)
        segments = cam.ring.covering(ev.start_wall - cam.pre, p.due)
        if not segments:
            return self._fail(ev, "nothing was recorded for it")
        out = self.directory / f"{ev.id}.mp4"
        try:
            self.directory.mkdir(parents=True, exist_ok=True)
            self.join_segments(segments, out)
        except OSError as exc:
            return self._fail(ev, exc.strerror or str(exc))
        if not self._ok:
            log.info("clips are made again")
        self._ok = True
        return ClipResult(ev.id, ev.camera, str(out), segments[0].start, segments[-1].end)

    def _fail(self, ev: Event, why: str) -> ClipResult:
        self.failed(ev.camera)
        if self._ok:
            log.warning("camera %s: no clip for event %s (%s); the event goes out without one",
                        ev.camera, ev.id, why)
        self._ok = False
        return ClipResult(ev.id, ev.camera, None)
