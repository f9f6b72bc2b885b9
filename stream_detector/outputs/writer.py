"""The writer: the one thread that writes. It turns the worker's events into payloads, saves their
snapshots, commits them to the event store (which the publisher drains) and keeps the store small.

Everything slow lives here so scoring never waits on a disk: fsync, JPEG encoding, file writes,
retention and WAL checkpoints. At start-up it closes the events an earlier run left open.
"""

from __future__ import annotations

import logging
import os
import queue
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from stream_detector.messages import Box, Event, EventOut, Peak, ScoreOut
from stream_detector.outputs.clips import Clipper, ClipResult
from stream_detector.outputs.store import EventStore

log = logging.getLogger(__name__)

Renderer = Callable[[Peak, Event], bytes | None]  # the JPEG of an event's peak frame
Payload = Callable[..., dict[str, Any]]  # (event, before, snapshot, clip=, clip_start=) -> JSON
TIMELINE_POINTS = 600  # an event's score timeline is thinned to at most this many points


class WriterMetrics(Protocol):
    def event(self, camera: str, type: str, latency_s: float | None = None) -> None: ...

    def snapshot_failed(self, camera: str) -> None: ...

    def thread_failed(self, thread: str) -> None: ...


@dataclass(frozen=True)
class Retention:
    keep_days: float = 30.0
    keep_mb: float = 0.0  # the store plus snapshots; 0 = no size budget
    interval: float = 600.0  # seconds between retention passes and WAL checkpoints


class Writer(threading.Thread):
    """Consumes `EventOut`/`ScoreOut` from `put` in order; `stored(seq, camera, captured)` is called
    for each committed event (the daemon wakes the publisher there); scores go to `score`.

    With `clips`, a camera's `end` is held until its clip is made (post-capture recorded, segments
    joined), and whatever that camera sends meanwhile waits behind it, so its messages stay in
    order; its next `start` makes the clip at once from what is recorded.

    Its thread, heartbeat and metrics label keep the name "emitter" (/healthz, thread_errors_total).
    """

    def __init__(self, store: EventStore, payload: Payload,
                 metrics: WriterMetrics, stored: Callable[[int, str, float], None],
                 score: Callable[[str, float], None], snapshot_dir: Path | None,
                 retention: Retention = Retention(), beat: Callable[[], None] = lambda: None,
                 idle_wait: float = 0.5, clock: Callable[[], float] = time.time,
                 clips: Clipper | None = None) -> None:
        super().__init__(name="emitter", daemon=True)
        self.store = store
        self.payload = payload
        self.metrics = metrics
        self.stored = stored
        self.score = score
        self.snapshot_dir = snapshot_dir
        self.retention = retention
        self.beat = beat
        self.idle_wait = idle_wait
        self.clock = clock
        self.clips = clips
        self._inbox: queue.Queue[EventOut | ScoreOut | ClipResult | None] = queue.Queue()
        self._renderers: dict[str, Renderer | None] = {}
        self._held: dict[str, list[EventOut]] = {}  # camera -> what waits behind its held end
        self._ending: dict[str, tuple[EventOut, str | None]] = {}  # event id -> (end, snapshot)
        self._scores: dict[str, deque[tuple[float, float]]] = {}  # camera -> recent (wall, score)
        self._stopping: float | None = None
        self._before: dict[str, dict[str, Any]] = {}  # event id -> its last "after"
        self._snapshot_ok = True
        self._next_maintenance = 0.0

    # --- called from other threads -------------------------------------------------------------

    def put(self, item: EventOut | ScoreOut | ClipResult) -> None:
        self._inbox.put(item)

    def camera(self, name: str, render: Renderer | None) -> None:
        """How a camera's snapshots are drawn (None: no snapshots); set before it is scored."""
        self._renderers[name] = render

    def latest_score(self, camera: str) -> float | None:
        """The camera's last score (any thread: reads the newest entry only)."""
        scores = self._scores.get(camera)
        try:
            return scores[-1][1] if scores else None
        except IndexError:
            return None

    def finish(self, timeout: float = 5.0) -> None:
        """Handle everything queued so far (held ends get their clips from what is recorded),
        then end the thread."""
        self._inbox.put(None)
        self.join(timeout + (5.0 if self.clips is not None else 0.0))

    # --- start-up (before the threads run) -----------------------------------------------------

    def recover(self) -> list[str]:
        """End the events an earlier run left open (killed mid-event) with reason "restart"."""
        closed = []
        now = self.clock()
        for row in self.store.open_events():
            last = row.payload["after"]
            b = last.get("box")
            event = Event(last["id"], last["camera"], "end", last["start_time"], last["stream_start"],
                          now, last.get("stream_end") or last["stream_start"], last["peak_score"], 0,
                          Box(*b) if b else None, last["score"], reason="restart",
                          kind=last.get("kind", "anomaly"), model=last.get("model"),
                          detail=last.get("detail"))
            payload = self.payload(event, last, last.get("snapshot"))
            self.stored(self.store.append(event, payload), event.camera, time.monotonic())
            if event.kind == "anomaly":  # camera_tampered has its own gauge (set by the worker)
                self.metrics.event(event.camera, "end")
            closed.append(event.camera)
            log.warning("camera %s: event %s was left open by the previous run; ended it",
                        event.camera, event.id)
        self.maintain()
        return closed

    # --- the thread --------------------------------------------------------------------------

    def run(self) -> None:
        while True:
            self.beat()
            if self._stopping is not None and (not self._held or time.monotonic() > self._stopping):
                break
            try:
                item = self._inbox.get(timeout=self.idle_wait)
            except queue.Empty:
                self._handle(None)  # idle: retention may be due
                continue
            if item is None:  # finish(): held ends get their clips now, then the thread ends
                self._stopping = time.monotonic() + 5.0
                if self.clips is not None:
                    self.clips.hurry()
                continue
            self._handle(item)
        while self._ending:  # clips that did not come in time: the ends go out without them
            out, _ = next(iter(self._ending.values()))
            self._handle(ClipResult(out.event.id, out.event.camera, None))

    def _handle(self, item: EventOut | ScoreOut | ClipResult | None) -> None:
        try:
            if isinstance(item, EventOut):
                self._event(item)
            elif isinstance(item, ClipResult):
                self._clip_made(item)
            elif isinstance(item, ScoreOut):
                if item.wall_time:
                    self._scores.setdefault(item.camera, deque(maxlen=6000)).append(
                        (item.wall_time, item.score))
                self.score(item.camera, item.score)
            if time.monotonic() >= self._next_maintenance:
                self.maintain()
        except Exception:  # noqa: BLE001 - logged and counted; the next event must still go
            log.exception("emitter: failed on %r", item)
            self.metrics.thread_failed("emitter")

    def _event(self, out: EventOut) -> None:
        ev = out.event
        held = self._held.get(ev.camera)
        if held is not None:  # the camera's end waits for its clip: this waits behind it
            held.append(out)
            if ev.type == "start" and self.clips is not None:
                self.clips.hurry(ev.camera)
            return
        snap = self._snapshot(ev, out.peak) if ev.type in ("start", "end") else None
        # A camera_tampered event has no clip (it would show the covered lens) and its end, the
        # camera's return, must not wait post_capture seconds for one.
        if self.clips is not None and ev.kind == "anomaly" and self.clips.records(ev.camera):
            if ev.type == "start":
                self.clips.begin(ev)
            elif ev.type == "end":
                self._held[ev.camera] = []
                self._ending[ev.id] = (out, snap)
                self.clips.finish(ev, self.put)
                return
        self._commit(out, snap, None)

    def _clip_made(self, result: ClipResult) -> None:
        """A held end's clip is made (or failed): store the end, then what waited behind it."""
        if result.event_id not in self._ending:
            return  # stored without it at shutdown
        out, snap = self._ending.pop(result.event_id)
        self._commit(out, snap, result)
        for item in self._held.pop(result.camera, []):
            self._event(item)  # another end among them is held in turn, and the rest behind it

    def _commit(self, out: EventOut, snap: str | None, clip: ClipResult | None) -> None:
        ev = out.event
        before = self._before.get(ev.id)
        path = clip.path if clip is not None else None
        payload = self.payload(ev, before, snap or (before or {}).get("snapshot"), clip=path,
                               clip_start=clip.start if clip is not None else None)
        timeline = None
        if ev.type == "end":
            self._before.pop(ev.id, None)
            timeline = self._timeline(ev, clip)
        else:
            self._before[ev.id] = payload["after"]
        seq = self.store.append(ev, payload, timeline)
        if ev.kind == "anomaly":
            self.metrics.event(ev.camera, ev.type)
        self.stored(seq, ev.camera, out.captured)

    def _timeline(self, ev: Event, clip: ClipResult | None) -> list[list[float]]:
        """The camera's scores over the clip (or the event and a little before), thinned."""
        t0 = clip.start if clip is not None and clip.start is not None else ev.start_wall - 5.0
        t1 = clip.end if clip is not None and clip.end is not None else (ev.end_wall or t0)
        points = [[round(t, 3), round(s, 4)] for t, s in self._scores.get(ev.camera, ())
                  if t0 <= t <= t1]
        step = max(1, -(-len(points) // TIMELINE_POINTS))
        return points[::step]

    def _snapshot(self, ev: Event, peak: Peak | None) -> str | None:
        """Render, then write to a temporary name and rename: never a truncated or empty JPEG."""
        render = self._renderers.get(ev.camera)
        if render is None or peak is None or self.snapshot_dir is None:
            return None
        jpeg = render(peak, ev)
        if not jpeg:
            return None
        path = self.snapshot_dir / f"{ev.id}-{ev.type}.jpg"
        tmp = path.with_name(f".{path.name}.tmp")
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            with open(tmp, "wb") as fh:
                fh.write(jpeg)
            os.replace(tmp, path)
        except OSError as exc:  # disk full: the event still goes out, without its picture
            tmp.unlink(missing_ok=True)
            self.metrics.snapshot_failed(ev.camera)
            if self._snapshot_ok:
                log.warning("camera %s: snapshot not saved (%s)", ev.camera, exc.strerror or exc)
            self._snapshot_ok = False
            return None
        if not self._snapshot_ok:
            log.info("snapshots are saved again")
        self._snapshot_ok = True
        return str(path)

    def maintain(self) -> None:
        """Retention by age and size (rows and snapshot files), then a WAL checkpoint."""
        self._next_maintenance = time.monotonic() + self.retention.interval
        cutoff = self.clock() - self.retention.keep_days * 86400
        pruned = self.store.prune(cutoff)
        files = self._media_files()
        for p, st in files:
            if st.st_mtime < cutoff:
                p.unlink(missing_ok=True)
        files = [(p, st) for p, st in files if st.st_mtime >= cutoff]
        self.store.checkpoint()  # first: a WAL that outgrew the database is not data to delete
        budget = self.retention.keep_mb * 1e6
        if budget > 0:
            total = self.store.size_bytes() + sum(st.st_size for _, st in files)
            while files and total > budget:  # pictures are the bulk: the oldest go first
                p, st = files.pop(0)
                p.unlink(missing_ok=True)
                total -= st.st_size
            if total > budget and self.store.prune_oldest(max(100, self.store.pending)) > 0:
                self.store.checkpoint(vacuum=True)  # deleted rows free disk only after a VACUUM
        if pruned:
            log.info("retention: deleted %d events older than %g days", pruned,
                     self.retention.keep_days)

    def _media_files(self) -> list[tuple[Path, os.stat_result]]:
        """Snapshots and clips, oldest first: what retention deletes files from."""
        found = []
        if self.snapshot_dir is not None and self.snapshot_dir.is_dir():
            found += self.snapshot_dir.glob("*.jpg")
        if self.clips is not None and self.clips.directory.is_dir():
            found += self.clips.directory.glob("*.mp4")
        out = []
        for p in found:
            try:
                out.append((p, p.stat()))
            except FileNotFoundError:
                continue
        return sorted(out, key=lambda x: x[1].st_mtime)
