"""The review API's routes without a server: who may call them (token, loopback Host, same-origin
JSON verdicts), verdicts checked and stored as messages of their own, files only from the store."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from stream_detector.messages import Event
from stream_detector.outputs import EventStore, Reviews, VerdictError, event_payload, review_routes
from stream_detector.web import Request, Response, Router

TOKEN = "0123456789abcdef-token"


def call(router: Router, method: str, path: str, headers: dict[str, str] | None = None,
         body: bytes = b"", query: dict[str, str] | None = None) -> Response:
    route, params = router.resolve(method, path)
    request = Request(method, path, query or {}, {k.lower(): v for k, v in (headers or {}).items()},
                      body, "127.0.0.1", params)
    return router.call(route, request)


@pytest.fixture()
def store(tmp_path: Path) -> EventStore:
    store = EventStore(tmp_path / "events.sqlite")
    for kind, end in (("start", None), ("end", 1010.0)):
        ev = Event("ev1", "door", kind, 1000.0, 0.0, end, end, 3.0, 1, None, 2.0)
        store.append(ev, event_payload(ev, None, str(tmp_path / "snapshots" / "ev1-start.jpg"),
                                          host="cam-host"))
    return store


def routes(store: EventStore, tmp_path: Path, token: str = "") -> tuple[Router, list[str]]:
    rejected: list[str] = []
    reviews = Reviews(store, rejected=rejected.append, clock=lambda: 2000.0)
    return review_routes(reviews, lambda: [], tmp_path, token), rejected


LOCAL = {"Host": "127.0.0.1:9108"}
JSON = {**LOCAL, "Content-Type": "application/json"}


def test_without_a_token_only_loopback_host_names_are_served(store: EventStore,
                                                              tmp_path: Path) -> None:
    router, _ = routes(store, tmp_path)
    assert call(router, "GET", "/api/events", LOCAL).status == 200
    assert call(router, "GET", "/api/events", {"Host": "localhost:9108"}).status == 200
    assert call(router, "GET", "/api/events", {"Host": "[::1]:9108"}).status == 200
    refused = call(router, "GET", "/api/events", {"Host": "rebound.example:9108"})
    assert refused.status == 403 and b"loopback" in refused.body


def test_with_a_token_every_route_needs_it_and_the_page_keeps_it_in_a_cookie(
        store: EventStore, tmp_path: Path) -> None:
    router, _ = routes(store, tmp_path, TOKEN)
    host = {"Host": "cameras.lan:9108"}
    assert call(router, "GET", "/api/events", host).status == 401
    assert call(router, "GET", "/api/events", {**host, "Authorization": "Bearer wrong"}).status == 401
    assert call(router, "GET", "/api/events", {**host, "Authorization": f"Bearer {TOKEN}"}).status == 200
    assert call(router, "GET", "/api/events", {**host, "Cookie": f"x=1; sd_token={TOKEN}"}).status == 200
    assert call(router, "GET", "/api/events", host, query={"token": TOKEN}).status == 401  # page only
    page = call(router, "GET", "/", host, query={"token": TOKEN})
    assert page.status == 303 and page.headers["Location"] == "/"
    assert f"sd_token={TOKEN}" in page.headers["Set-Cookie"] and "HttpOnly" in page.headers["Set-Cookie"]
    assert call(router, "GET", "/", {**host, "Cookie": f"sd_token={TOKEN}"}).status == 200


def test_verdicts_are_checked_stored_and_refused_cross_site(store: EventStore,
                                                            tmp_path: Path) -> None:
    router, rejected = routes(store, tmp_path)
    post = "/api/events/ev1/verdict"
    good = json.dumps({"verdict": "false_alarm"}).encode()
    assert call(router, "POST", post, {**JSON, "Origin": "http://evil.example"}, good).status == 403
    assert call(router, "POST", post, {**JSON, "Sec-Fetch-Site": "cross-site"}, good).status == 403
    assert call(router, "POST", post, {**LOCAL, "Content-Type": "text/plain"}, good).status == 415
    assert call(router, "POST", post, JSON, b'{"verdict": "maybe"}').status == 400
    assert call(router, "POST", post, JSON, b'{"verdict": "confirmed", "x": 1}').status == 400
    assert call(router, "POST", "/api/events/nope/verdict", JSON, good).status == 404
    assert call(router, "POST", "/api/events/a%2Fb/verdict", JSON, good).status == 404
    assert rejected == ["http"] * 3  # the value, the unknown ids; a bad body fails before
    done = call(router, "POST", post, {**JSON, "Origin": "http://127.0.0.1:9108",
                                       "Sec-Fetch-Site": "same-origin"}, good)
    assert done.status == 200 and json.loads(done.body)["verdict"] == "false_alarm"
    rows = store.query()
    assert rows[-1].type == "verdict" and rows[-1].payload == {
        "type": "verdict", "id": "ev1", "camera": "door", "verdict": "false_alarm", "time": 2000.0,
        "source": "http"}
    assert [e["verdict"] for e in store.events(verdict="false_alarm")] == ["false_alarm"]
    assert store.events(verdict="none") == []
    assert store.open_events() == []  # a verdict after the end does not reopen the event


def test_files_are_served_only_from_the_store(store: EventStore, tmp_path: Path) -> None:
    (tmp_path / "snapshots").mkdir()
    (tmp_path / "snapshots" / "ev1-start.jpg").write_bytes(b"jpeg")
    (tmp_path / "secret.jpg").write_bytes(b"secret")
    router, _ = routes(store, tmp_path)
    got = call(router, "GET", "/api/events/ev1/snapshot.jpg", LOCAL)
    assert got.status == 200 and got.content_type == "image/jpeg"
    assert call(router, "GET", "/api/events/ev1/clip.mp4", LOCAL).status == 404  # none made
    # A path edited into the database is not followed out of snapshots/.
    ev = Event("ev2", "door", "start", 1020.0, 0.0, None, None, 3.0, 1, None, 2.0)
    store.append(ev, event_payload(ev, None, str(tmp_path / "secret.jpg"), host="cam-host"))
    assert call(router, "GET", "/api/events/ev2/snapshot.jpg", LOCAL).status == 404
    assert call(router, "GET", "/static/index.html", LOCAL).status == 404
    assert call(router, "GET", "/static/app.js", LOCAL).status == 200


def test_mqtt_verdicts_are_checked_like_http_ones(store: EventStore) -> None:
    rejected: list[str] = []
    reviews = Reviews(store, rejected=rejected.append)
    reviews.from_mqtt("door", b"not json")
    reviews.from_mqtt("door", b'{"id": "ev1", "verdict": "maybe"}')
    reviews.from_mqtt("yard", b'{"id": "ev1", "verdict": "confirmed"}')  # another camera's event
    assert rejected == ["mqtt"] * 3
    reviews.from_mqtt("door", b'{"id": "ev1", "verdict": "confirmed"}')
    assert store.events()[0]["verdict"] == "confirmed"
    with pytest.raises(VerdictError) as err:
        reviews.set("ev1", "confirmed", "http", camera="yard")
    assert err.value.status == 409
