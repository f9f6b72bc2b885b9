"""The review API and page, as routes for the daemon's web server: events (listed, filtered, paged;
one with its score timeline; its snapshot and clip, with byte ranges), cameras, verdicts; the page
itself (outputs/page/); and who may use them (a token, the loopback's host names, same origin).
"""

from __future__ import annotations

import datetime as dt
import hmac
import math
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlsplit

from stream_detector.config import CAMERA_NAME_CHARS, is_loopback
from stream_detector.outputs.event_index import VERDICTS
from stream_detector.outputs.review import EVENT_ID, Reviews, VerdictError
from stream_detector.web import Guard, HttpError, Request, Response, Router

PAGE = Path(__file__).with_name("page")
PAGE_FILES = {"app.js": "text/javascript; charset=utf-8", "style.css": "text/css; charset=utf-8"}
COOKIE = "sd_token"
MAX_LIMIT = 500
NO_STORE = {"Cache-Control": "no-store"}

CameraStates = Callable[[], list[dict[str, Any]]]  # each camera's name, state, score, last event


def review_routes(reviews: Reviews, cameras: CameraStates, storage: Path, token: str = "") -> Router:
    """Every route of the API and page, behind `access_guard(token)`."""
    api = _Api(reviews, cameras, storage, token)
    router = Router(access_guard(token))
    router.get("/", api.page)
    router.get("/static/{name}", api.static)
    router.get("/api/events", api.events)
    router.get("/api/events/{id}", api.event)
    router.get("/api/events/{id}/snapshot.jpg", api.snapshot)
    router.get("/api/events/{id}/clip.mp4", api.clip)
    router.get("/api/cameras", api.cameras)
    router.post("/api/events/{id}/verdict", api.verdict, max_body=1024)
    return router


def access_guard(token: str) -> Guard:
    """With a token: a request must carry it (Authorization: Bearer, the page's cookie, or
    `?token=` on the page itself). Without one (the server is on the loopback only): the Host
    must be a loopback name, so a web page cannot reach us by rebinding its own name to 127.0.0.1.
    Verdicts must come from the same origin, as JSON: a form on another site cannot send them."""

    def guard(request: Request) -> Response | None:
        if token:
            given = _bearer(request) or _cookie(request, COOKIE)
            if not given and request.path == "/":
                given = request.query.get("token", "")
            if not hmac.compare_digest(given.encode(), token.encode()):
                return HttpError(401, "a valid token is required (Authorization: Bearer TOKEN)",
                                 {"WWW-Authenticate": "Bearer"}).response()
        elif not is_loopback(_host_name(request.header("host"))):
            return HttpError(403, "Host must be a loopback name (127.0.0.1, localhost, [::1])"
                             ).response()
        if request.method == "POST":
            return _same_origin(request)
        return None

    return guard


def _same_origin(request: Request) -> Response | None:
    site = request.header("sec-fetch-site")
    origin = request.header("origin")
    if site and site not in ("same-origin", "none"):
        return HttpError(403, f"cross-site request refused (Sec-Fetch-Site: {site})").response()
    if origin and urlsplit(origin).netloc != request.header("host"):
        return HttpError(403, "cross-site request refused (Origin is not this server)").response()
    if request.header("content-type").split(";")[0].strip().lower() != "application/json":
        return HttpError(415, "the body must be JSON (Content-Type: application/json)").response()
    return None


def _bearer(request: Request) -> str:
    kind, _, value = request.header("authorization").partition(" ")
    return value.strip() if kind.lower() == "bearer" else ""


def _cookie(request: Request, name: str) -> str:
    for part in request.header("cookie").split(";"):
        key, _, value = part.strip().partition("=")
        if key == name:
            return value
    return ""


def _host_name(host: str) -> str:
    if host.startswith("["):
        return host[1:].partition("]")[0]
    return host.rpartition(":")[0] if host.count(":") == 1 else host


class _Api:
    def __init__(self, reviews: Reviews, cameras: CameraStates, storage: Path, token: str) -> None:
        self.reviews = reviews
        self.camera_states = cameras
        self.snapshots = (storage / "snapshots").resolve()
        self.clips = (storage / "clips").resolve()
        self.token = token

    def page(self, request: Request) -> Response:
        if self.token and request.query.get("token"):  # keep it in a cookie, out of the URL
            cookie = f"{COOKIE}={self.token}; HttpOnly; SameSite=Strict; Path=/"
            return Response(303, b"", headers={"Location": "/", "Set-Cookie": cookie, **NO_STORE})
        return Response(200, (PAGE / "index.html").read_bytes(), "text/html; charset=utf-8",
                        NO_STORE)

    def static(self, request: Request) -> Response:
        name = request.params["name"]
        if name not in PAGE_FILES:  # a fixed list: nothing else of the package is served
            raise HttpError(404, "not found")
        return Response(200, (PAGE / name).read_bytes(), PAGE_FILES[name], NO_STORE)

    def events(self, request: Request) -> Response:
        q = request.query
        unknown = sorted(set(q) - {"camera", "since", "until", "verdict", "limit", "offset"})
        if unknown:
            raise HttpError(400, f"unknown parameter {unknown[0]!r} (allowed: camera, since, "
                                 f"until, verdict, limit, offset)")
        camera = q.get("camera") or None
        if camera is not None and not set(camera) <= CAMERA_NAME_CHARS:
            raise HttpError(400, "camera: names use letters, digits, '_' and '-' only")
        verdict = q.get("verdict") or None
        if verdict is not None and verdict not in (*VERDICTS, "none"):
            raise HttpError(400, f"verdict: must be {', '.join(VERDICTS)} or none")
        limit = _integer(q, "limit", 50, 1, MAX_LIMIT)
        offset = _integer(q, "offset", 0, 0, 10**7)
        found = self.reviews.store.events(camera, _time(q, "since"), _time(q, "until"), verdict,
                                          limit, offset)
        return Response.json({"events": [_public(e) for e in found], "limit": limit,
                              "offset": offset,
                              "next": offset + limit if len(found) == limit else None}, headers=NO_STORE)

    def event(self, request: Request) -> Response:
        return Response.json(_public(self._event(request)), headers=NO_STORE)

    def snapshot(self, request: Request) -> Response:
        event = self._event(request)
        return self._file(event.get("snapshot"), self.snapshots, request, "image/jpeg", "snapshot")

    def clip(self, request: Request) -> Response:
        event = self._event(request)
        return self._file(event.get("clip"), self.clips, request, "video/mp4", "clip")

    def cameras(self, request: Request) -> Response:
        return Response.json({"cameras": self.camera_states()}, headers=NO_STORE)

    def verdict(self, request: Request) -> Response:
        body = request.json()
        if not isinstance(body, dict) or set(body) != {"verdict"}:
            raise HttpError(400, 'body must be {"verdict": "false_alarm" | "confirmed"}')
        try:
            event = self.reviews.set(request.params["id"], body["verdict"], "http")
        except VerdictError as exc:
            raise HttpError(exc.status, exc.message) from None
        return Response.json(_public(event), headers=NO_STORE)

    def _event(self, request: Request) -> dict[str, Any]:
        try:
            return self.reviews.event(request.params["id"])
        except VerdictError as exc:
            raise HttpError(exc.status, exc.message) from None

    def _file(self, stored: Any, root: Path, request: Request, content_type: str,
              what: str) -> Response:
        """A file the event names, only if it lies directly in `root`: a path edited into the
        database (or one from an older layout) is never followed elsewhere."""
        if not isinstance(stored, str) or not stored:
            raise HttpError(404, f"this event has no {what}")
        path = Path(stored).resolve()
        if path.parent != root or not path.name.startswith(request.params["id"]):
            raise HttpError(404, f"this event's {what} is not in the store")
        return Response.file(path, request, content_type, {"Cache-Control": "private, max-age=60"})


def _public(event: dict[str, Any]) -> dict[str, Any]:
    """An event for the API: URLs instead of the store's file paths."""
    out = {k: v for k, v in event.items() if k not in ("snapshot", "clip")}
    base = f"/api/events/{quote(event['id'])}"
    out["snapshot_url"] = f"{base}/snapshot.jpg" if event.get("snapshot") else None
    out["clip_url"] = f"{base}/clip.mp4" if event.get("has_clip") and event.get("clip") else None
    end = event.get("end_time")
    out["duration"] = round(end - event["start_time"], 3) if end is not None else None
    return out


def _integer(q: Any, key: str, default: int, low: int, high: int) -> int:
    text = q.get(key)
    if text is None or text == "":
        return default
    if not text.isdigit() or not low <= int(text) <= high:
        raise HttpError(400, f"{key}: must be an integer in {low}..{high}")
    return int(text)


def _time(q: Any, key: str) -> float | None:
    """Epoch seconds or an ISO time (local time unless it says otherwise)."""
    text = q.get(key)
    if not text:
        return None
    try:
        value = float(text)
    except ValueError:
        try:
            stamp = dt.datetime.fromisoformat(text)
            value = (stamp if stamp.tzinfo else stamp.astimezone()).timestamp()
        except (ValueError, OverflowError, OSError):
            raise HttpError(400, f"{key}: expected epoch seconds or an ISO time") from None
    if not math.isfinite(value):
        raise HttpError(400, f"{key}: expected epoch seconds or an ISO time")
    return value
