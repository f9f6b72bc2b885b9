"""The on-disk event store: every event is committed to SQLite before anyone publishes it; and the
`events` listing read from it.

It owns the sequence numbers that fix publishing order, and it rides out disk faults by keeping
unwritten events (and publish marks) in memory, in order, until the database accepts them again.
"""

from __future__ import annotations

import json
import logging
import sqlite3
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from stream_detector.config import StorageConfig
from stream_detector.errors import ConfigError, UserError
from stream_detector.messages import Event
from stream_detector.outputs import event_index

log = logging.getLogger("stream_detector.store")  # its name before outputs/: tests use it

FILE_NAME = "events.sqlite"
_PAYLOAD_TYPES = {"start": "new", "update": "update", "end": "end"}

_SCHEMA = """
CREATE TABLE IF NOT EXISTS events (
    seq       INTEGER PRIMARY KEY,
    event_id  TEXT NOT NULL,
    camera    TEXT NOT NULL,
    type      TEXT NOT NULL,
    wall_time REAL NOT NULL,
    payload   TEXT NOT NULL,
    published INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX IF NOT EXISTS events_unpublished ON events (published, seq);
CREATE INDEX IF NOT EXISTS events_camera_time ON events (camera, wall_time);
"""


@dataclass(frozen=True)
class StoredEvent:
    """One row of the store; `wall_time` is the event's start, update or end time, by type."""

    seq: int
    event_id: str
    camera: str
    type: str  # the Event's type: "start" | "update" | "end"
    wall_time: float
    payload: dict[str, Any]
    published: bool
    timeline: list[list[float]] | None = None  # an end's scores over its clip: [[wall, score], ...]


def event_payload(event: Event, before: dict[str, Any] | None, snapshot: str | None = None, *,
                  host: str, clip: str | None = None,
                  clip_start: float | None = None) -> dict[str, Any]:
    """The JSON published on `<prefix>/events`, shaped like Frigate's so existing automations fit.

    `before` is the "after" of the previous payload for the same event id (None for the first);
    `host` is the node id of the host that saw it (a fleet shares one broker); an `end` carries
    its clip (`has_clip`, `clip`: its path, `clip_start`: its first frame's time).
    """
    after = {
        "id": event.id,
        "host": host,
        "camera": event.camera,
        "start_time": event.start_wall,
        "end_time": event.end_wall,
        "stream_start": event.start_stream,
        "stream_end": event.end_stream,
        "peak_score": float(event.peak_score),
        "score": float(event.score),
        "box": event.box.as_list() if event.box is not None else None,
        "snapshot": snapshot,
        "end_reason": event.reason if event.type == "end" else None,
        "has_clip": clip is not None,
        "clip": clip,
        "clip_start": clip_start if clip is not None else None,
        "kind": event.kind,
        "model": event.model,
        "detail": event.detail,
    }
    if before is not None and "host" not in before:  # stored by a release without node ids
        before = {"id": before.get("id"), "host": host, **before}
    return {"type": _PAYLOAD_TYPES[event.type], "before": before, "after": after}


class EventStore:
    """Durable, ordered event log with a `published` flag per event.

    Safe to share between the thread that appends and the publisher thread. `busy_timeout` bounds
    how long a write waits for a lock held by another process before counting as a fault.
    """

    def __init__(self, path: Path, busy_timeout: float = 2.0) -> None:
        self.path = path
        self._lock = threading.Lock()
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            self._conn = sqlite3.connect(path, timeout=busy_timeout, check_same_thread=False)
            self._conn.execute("PRAGMA journal_mode=WAL")
            self._conn.execute("PRAGMA synchronous=FULL")  # committed means on disk
            self._conn.executescript(_SCHEMA)
            event_index.create(self._conn)
            row = self._conn.execute("SELECT COALESCE(MAX(seq), 0) FROM events").fetchone()
        except (OSError, sqlite3.Error) as exc:
            raise UserError(f"{path}: cannot open the event store ({exc})") from None
        self._next_seq = int(row[0]) + 1
        self._backlog: list[StoredEvent] = []  # appended but not yet written, in seq order
        self._marks: set[int] = set()  # published, but the flag is not yet written
        self.healthy = True
        self.write_failures = 0  # transactions the database refused (a counter for metrics)
        try:
            self._pending = int(self._conn.execute(
                "SELECT COUNT(*) FROM events WHERE published = 0").fetchone()[0])
        except sqlite3.Error as exc:
            raise UserError(f"{path}: cannot read the event store ({exc})") from None

    @classmethod
    def from_config(cls, storage: StorageConfig) -> EventStore:
        return cls(Path(storage.path) / FILE_NAME)

    @property
    def backlog_size(self) -> int:
        """Events held in memory because the disk refused them (for a gauge)."""
        return len(self._backlog)

    @property
    def last_seq(self) -> int:
        """The sequence number of the newest event appended (0 when empty)."""
        with self._lock:
            return self._next_seq - 1

    @property
    def pending(self) -> int:
        """Events stored (or held) but not yet delivered: the outbox backlog."""
        return self._pending

    def open_events(self) -> list[StoredEvent]:
        """The last row of every event that has no `end`: left open by a crash or a kill."""
        with self._lock:
            return self._select(
                "WHERE seq IN (SELECT MAX(seq) FROM events WHERE type != 'verdict'"
                " GROUP BY event_id HAVING SUM(type = 'end') = 0) ORDER BY seq", ())

    def append(self, event: Event, payload: dict[str, Any],
               timeline: list[list[float]] | None = None) -> int:
        """Commit one event and return its sequence number; on a disk fault keep it in memory."""
        wall = event.end_wall if event.end_wall is not None else (event.update_wall
                                                                  or event.start_wall)
        return self._append(event.id, event.camera, event.type, wall, payload, timeline)

    def append_verdict(self, event_id: str, camera: str, verdict: str, source: str,
                       wall: float) -> dict[str, Any]:
        """Store an operator's verdict on an event as a message of its own (published on
        `<prefix>/events/verdict`, in order with the events); returns its payload."""
        payload = {"type": "verdict", "id": event_id, "camera": camera, "verdict": verdict,
                   "time": wall, "source": source}
        self._append(event_id, camera, "verdict", wall, payload, None)
        return payload

    def _append(self, event_id: str, camera: str, kind: str, wall: float,
                payload: dict[str, Any], timeline: list[list[float]] | None) -> int:
        with self._lock:
            seq = self._next_seq
            self._next_seq += 1
            self._backlog.append(StoredEvent(seq, event_id, camera, kind, wall, payload, False,
                                             timeline))
            self._pending += 1
            self._flush()
        return seq

    def events(self, camera: str | None = None, since: float | None = None,
               until: float | None = None, verdict: str | None = None, limit: int = 50,
               offset: int = 0, ids: tuple[str, ...] = ()) -> list[dict[str, Any]]:
        """Events (one item each, newest first) as written to disk; with `ids`, their timelines."""
        with self._lock:
            try:
                return event_index.listing(self._conn, camera, since, until, verdict, limit,
                                           offset, ids)
            except sqlite3.Error as exc:
                self._set_healthy(False, exc)
                return []

    def unpublished(self, limit: int = 100) -> list[StoredEvent]:
        """The oldest unpublished events, in sequence order; retries a pending backlog first."""
        with self._lock:
            self._flush()
            rows = self._select("WHERE published = 0 ORDER BY seq LIMIT ?", (limit,))
            out = [e for e in rows if e.seq not in self._marks]
            out += [e for e in self._backlog if not e.published and e.seq not in self._marks]
            return out[:limit]

    def mark_published(self, seq: int) -> None:
        """Record delivery; if the disk refuses, remember it and write it with the next flush."""
        with self._lock:
            if seq not in self._marks:
                self._marks.add(seq)
                self._pending = max(0, self._pending - 1)
            self._flush()

    def query(self, camera: str | None = None, since: float | None = None,
              limit: int = 1000) -> list[StoredEvent]:
        """The newest `limit` events matching the filters, oldest first (backlog included)."""
        where: list[str] = ["1 = 1"]
        args: list[Any] = []
        if camera is not None:
            where.append("camera = ?")
            args.append(camera)
        if since is not None:
            where.append("wall_time >= ?")
            args.append(since)
        with self._lock:
            rows = self._select(f"WHERE {' AND '.join(where)} ORDER BY seq DESC LIMIT ?",
                                (*args, limit))
            rows.reverse()
            rows += [e for e in self._backlog if (camera is None or e.camera == camera)
                     and (since is None or e.wall_time >= since)]
            rows = [e if e.seq not in self._marks else _published(e) for e in rows]
            return rows[-limit:] if limit > 0 else []

    def prune(self, before: float) -> int:
        """Delete published events with wall time before `before` (epoch seconds); returns count."""
        return self._delete("WHERE published = 1 AND wall_time < ?", (before,))

    def prune_oldest(self, count: int) -> int:
        """Delete the `count` oldest published events (the size budget is exceeded)."""
        return self._delete("WHERE seq IN (SELECT seq FROM events WHERE published = 1 ORDER BY seq"
                            " LIMIT ?)", (count,))

    def size_bytes(self) -> int:
        """The database with its WAL, as the disk sees it."""
        return sum(p.stat().st_size for p in (self.path, self.path.with_name(self.path.name + "-wal"))
                   if p.exists())

    def checkpoint(self, vacuum: bool = False) -> None:
        """Fold the WAL into the database and truncate it, so it cannot grow without bound."""
        with self._lock:
            try:
                if vacuum:
                    self._conn.execute("VACUUM")
                self._conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
            except sqlite3.Error as exc:
                log.warning("event store: checkpoint failed (%s); will try again later", exc)

    def close(self) -> None:
        """Try once more to write what is held in memory, then close the database.

        What still cannot be written is logged in full, one line per event: never dropped unseen.
        """
        with self._lock:
            self._flush()
            if self._backlog or self._marks:
                log.error("event store closing with %d unwritten events and %d unwritten marks; "
                          "the events follow", len(self._backlog), len(self._marks))
                for e in self._backlog:
                    log.error("unwritten event seq %d: %s", e.seq, json.dumps(e.payload))
            try:
                self._conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
            except sqlite3.Error:
                pass  # closing anyway; the next start replays the WAL
            self._conn.close()

    def _delete(self, where: str, args: tuple[Any, ...]) -> int:
        with self._lock:
            try:
                with self._conn:  # rowcount read at once: a cursor kept open would lock checkpoints
                    count = self._conn.execute(f"DELETE FROM events {where}", args).rowcount
                    if count:
                        event_index.forget_pruned(self._conn)
                return count
            except sqlite3.Error as exc:
                self.write_failures += 1
                self._set_healthy(False, exc)
                return 0

    # --- internals (caller holds self._lock) -----------------------------------------------------

    def _select(self, tail: str, args: tuple[Any, ...]) -> list[StoredEvent]:
        try:
            rows = self._conn.execute(
                "SELECT seq, event_id, camera, type, wall_time, payload, published FROM events "
                + tail, args).fetchall()
        except sqlite3.Error as exc:
            self._set_healthy(False, exc)
            return []
        if not self._backlog and not self._marks:
            self._set_healthy(True, None)
        return [StoredEvent(r[0], r[1], r[2], r[3], r[4], json.loads(r[5]), bool(r[6]))
                for r in rows]

    def _flush(self) -> None:
        """Write the backlog (in order) and pending marks in one transaction, or keep them all.

        OR IGNORE: if a commit reported failure after all, the retry must not trip on its rows.
        """
        if not self._backlog and not self._marks:
            return
        count = len(self._backlog)
        try:
            with self._conn:
                self._conn.executemany(
                    "INSERT OR IGNORE INTO events (seq, event_id, camera, type, wall_time,"
                    " payload, published) VALUES (?, ?, ?, ?, ?, ?, ?)",
                    [(e.seq, e.event_id, e.camera, e.type, e.wall_time, json.dumps(e.payload),
                      int(e.published or e.seq in self._marks)) for e in self._backlog])
                self._conn.executemany("UPDATE events SET published = 1 WHERE seq = ?",
                                       [(s,) for s in sorted(self._marks)])
                event_index.record(self._conn, [(e.seq, e.event_id, e.camera, e.type, e.payload,
                                                 e.timeline) for e in self._backlog])
        except sqlite3.Error as exc:  # locked, disk full, I/O error, a damaged file
            self.write_failures += 1
            self._set_healthy(False, exc)
            return
        self._backlog.clear()
        self._marks.clear()
        self._set_healthy(True, None, count)

    def _set_healthy(self, ok: bool, exc: Exception | None, written: int = 0) -> None:
        if ok == self.healthy:
            return
        self.healthy = ok
        if ok:
            log.info("event store writable again; wrote %d held events", written)
        else:
            log.warning("event store write failed (%s); holding events in memory until it "
                        "recovers", exc)


def stored_events(storage: StorageConfig, where: str, camera: str | None, since: float | None,
                  limit: int) -> list[tuple[StoredEvent, str | None]]:
    """What `events` lists: the newest `limit` stored messages matching the filters, oldest first,
    each with its event's current verdict; errors name the config (`where`) and storage.path.
    Never creates a store by reading one."""
    path = Path(storage.path) / FILE_NAME
    if not path.is_file():  # never create an empty store by asking what is in it
        raise ConfigError(f"{where}: storage.path: no event store at {path} "
                          f"(has the daemon run with this config?)")
    try:
        store = EventStore.from_config(storage)
    except UserError as exc:  # not SQLite, or unreadable: say which key led there
        raise ConfigError(f"{where}: storage.path: {exc}") from None
    try:
        rows = store.query(camera, since, limit)
        ids = tuple({r.event_id for r in rows})
        verdicts = {e["id"]: e["verdict"] for e in store.events(ids=ids, limit=len(ids))} if ids else {}
        return [(r, verdicts.get(r.event_id)) for r in rows]
    finally:
        store.close()


def _published(e: StoredEvent) -> StoredEvent:
    return StoredEvent(e.seq, e.event_id, e.camera, e.type, e.wall_time, e.payload, True)
