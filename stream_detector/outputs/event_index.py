"""The event index: one row per event (camera, times, peak, verdict, score timeline) beside the
store's rows per message, kept in the same transactions, so the review page and API can list and
filter events without reading every message. Built from the messages when an older store opens.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterable, Sequence
from typing import Any

VERDICTS = ("false_alarm", "confirmed")

SCHEMA = """
CREATE TABLE IF NOT EXISTS event_index (
    event_id     TEXT PRIMARY KEY,
    camera       TEXT NOT NULL,
    start_time   REAL NOT NULL,
    end_time     REAL,
    peak_score   REAL NOT NULL,
    last_seq     INTEGER NOT NULL,
    verdict      TEXT,
    verdict_time REAL,
    timeline     TEXT
);
CREATE INDEX IF NOT EXISTS event_index_start ON event_index (start_time);
"""

# An older store: every event's newest message fills its row.
_BACKFILL = """
INSERT OR IGNORE INTO event_index (event_id, camera, start_time, end_time, peak_score, last_seq)
SELECT e.event_id, e.camera, json_extract(e.payload, '$.after.start_time'),
       json_extract(e.payload, '$.after.end_time'), json_extract(e.payload, '$.after.peak_score'),
       e.seq
FROM events e JOIN (SELECT MAX(seq) AS seq FROM events WHERE type != 'verdict'
                    GROUP BY event_id) m ON e.seq = m.seq
"""


def create(conn: sqlite3.Connection) -> None:
    fresh = conn.execute("SELECT COUNT(*) FROM sqlite_master WHERE name = 'event_index'"
                         ).fetchall()[0][0] == 0
    conn.executescript(SCHEMA)
    if fresh:
        with conn:
            conn.execute(_BACKFILL)


def record(conn: sqlite3.Connection,
           rows: Iterable[tuple[int, str, str, str, dict[str, Any], list[list[float]] | None]]
           ) -> None:
    """Index rows being written: (seq, event_id, camera, type, payload, timeline). Caller commits."""
    for seq, event_id, camera, kind, payload, timeline in rows:
        if kind == "verdict":
            conn.execute("UPDATE event_index SET verdict = ?, verdict_time = ? WHERE event_id = ?",
                         (payload["verdict"], payload["time"], event_id))
            continue
        after = payload["after"]
        conn.execute(
            "INSERT INTO event_index (event_id, camera, start_time, end_time, peak_score, last_seq,"
            " timeline) VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT (event_id) DO UPDATE SET"
            " end_time = excluded.end_time, peak_score = excluded.peak_score,"
            " last_seq = MAX(last_seq, excluded.last_seq),"
            " timeline = COALESCE(excluded.timeline, timeline)",
            (event_id, camera, after["start_time"], after.get("end_time"), after["peak_score"],
             seq, json.dumps(timeline) if timeline is not None else None))


def forget_pruned(conn: sqlite3.Connection) -> None:
    """Rows whose messages retention deleted. Caller commits."""
    conn.execute("DELETE FROM event_index WHERE event_id NOT IN (SELECT event_id FROM events)"
                 ).close()


def listing(conn: sqlite3.Connection, camera: str | None, since: float | None,
            until: float | None, verdict: str | None, limit: int, offset: int,
            ids: Sequence[str] = ()) -> list[dict[str, Any]]:
    """Events newest first, each its newest message's `after` plus index fields."""
    where, args = ["1 = 1"], []
    for clause, value in (("i.camera = ?", camera), ("i.start_time >= ?", since),
                          ("i.start_time < ?", until)):
        if value is not None:
            where.append(clause)
            args.append(value)
    if verdict == "none":
        where.append("i.verdict IS NULL")
    elif verdict is not None:
        where.append("i.verdict = ?")
        args.append(verdict)
    if ids:
        where.append(f"i.event_id IN ({', '.join('?' * len(ids))})")
        args.extend(ids)
    rows = conn.execute(
        "SELECT i.event_id, i.camera, i.start_time, i.end_time, i.peak_score, i.verdict,"
        " i.verdict_time, e.payload, i.timeline, e.type FROM event_index i"
        " LEFT JOIN events e ON e.seq = i.last_seq"
        f" WHERE {' AND '.join(where)} ORDER BY i.start_time DESC, i.event_id LIMIT ? OFFSET ?",
        (*args, limit, offset)).fetchall()
    return [_item(r, with_timeline=bool(ids)) for r in rows]


def _item(r: tuple[Any, ...], with_timeline: bool) -> dict[str, Any]:
    after = json.loads(r[7])["after"] if r[7] else {}
    item = {**after, "id": r[0], "camera": r[1], "start_time": r[2], "end_time": r[3],
            "peak_score": r[4], "verdict": r[5], "verdict_time": r[6],
            "has_clip": bool(after.get("has_clip")), "open": r[9] not in ("end", None) and r[3] is None}
    if with_timeline:
        item["timeline"] = json.loads(r[8]) if r[8] else []
    return item
