"""The Router: patterns and params, 404/405, guards, included routers, handler bugs as 500 logged
at most once a minute; responses: JSON, files and byte ranges."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest

from stream_detector.web import FileSlice, HttpError, Request, Response, Router


def ok(request: Request) -> Response:
    return Response.json({"params": dict(request.params)})


def dispatch(router: Router, method: str, path: str, **kw: object) -> Response:
    try:
        route, params = router.resolve(method, path)
    except HttpError as exc:
        return exc.response()
    return router.call(route, Request(method, path, params=params, **kw))  # type: ignore[arg-type]


def body(response: Response) -> object:
    assert isinstance(response.body, bytes)
    return json.loads(response.body)


def test_patterns_params_and_methods() -> None:
    router = Router()
    router.get("/api/events", ok)
    router.get("/api/events/{id}", ok)
    router.post("/api/events/{id}/verdict", ok)
    router.get("/static/{name:path}", ok)
    router.get("/", ok)

    assert body(dispatch(router, "GET", "/api/events/ev%201")) == {"params": {"id": "ev 1"}}
    assert body(dispatch(router, "GET", "/api/events/")) == {"params": {}}
    assert body(dispatch(router, "POST", "/api/events/7/verdict")) == {"params": {"id": "7"}}
    assert body(dispatch(router, "GET", "/static/css/a.css")) == {"params": {"name": "css/a.css"}}
    assert body(dispatch(router, "HEAD", "/")) == {"params": {}}  # HEAD is served by GET

    missing = dispatch(router, "GET", "/api/events/7/nope")
    assert missing.status == 404 and body(missing) == {"error": "not found"}
    assert dispatch(router, "GET", "/static/").status == 404  # {name:path} needs a name
    wrong = dispatch(router, "GET", "/api/events/7/verdict")
    assert wrong.status == 405 and wrong.headers["Allow"] == "POST"
    assert dispatch(router, "DELETE", "/api/events").headers["Allow"] == "GET, HEAD"

    with pytest.raises(ValueError, match="already served"):
        router.get("/api/events", ok)
    with pytest.raises(ValueError, match="must start with"):
        router.get("api", ok)


def test_guards_per_route_per_router_and_through_include() -> None:
    def token(request: Request) -> Response | None:
        if request.header("Authorization") == "Bearer s3":
            return None
        return HttpError(401, "token required").response()

    review = Router(guard=token)
    review.get("/api/cameras", ok)
    review.get("/api/open", ok, guard=lambda _: None)  # a route may name its own guard
    app = Router()
    app.get("/healthz", ok)
    app.include(review)

    assert dispatch(app, "GET", "/healthz").status == 200
    assert dispatch(app, "GET", "/api/cameras").status == 401
    assert dispatch(app, "GET", "/api/cameras", headers={"authorization": "Bearer s3"}).status == 200
    assert dispatch(app, "GET", "/api/open").status == 200
    assert [r.pattern for r in app] == ["/healthz", "/api/cameras", "/api/open"]


def test_post_bodies_default_limit_and_json_errors() -> None:
    router = Router()
    router.post("/v", lambda r: Response.json(r.json()))
    router.post("/big", ok, max_body=10 << 20)
    assert {r.pattern: r.max_body for r in router} == {"/v": 64 * 1024, "/big": 10 << 20}
    assert body(dispatch(router, "POST", "/v", body=b'{"verdict": "confirmed"}')) == {
        "verdict": "confirmed"}
    bad = dispatch(router, "POST", "/v", body=b"{nope")
    assert bad.status == 400 and body(bad) == {"error": "body is not JSON (JSONDecodeError)"}


def test_a_handler_bug_is_a_500_logged_once_a_minute(caplog: pytest.LogCaptureFixture) -> None:
    router = Router()
    router.get("/bug", lambda _: 1 / 0)  # type: ignore[arg-type,return-value]
    with caplog.at_level(logging.ERROR):
        answers = [dispatch(router, "GET", "/bug") for _ in range(20)]
    assert {a.status for a in answers} == {500}
    assert body(answers[0]) == {"error": "internal error"}
    assert len(caplog.records) == 1 and caplog.records[0].exc_info is not None


@pytest.mark.parametrize(("header", "status", "part", "extra"), [
    ("", 200, (0, 1000), {}),
    ("bytes=0-99", 206, (0, 100), {"Content-Range": "bytes 0-99/1000"}),
    ("bytes=900-", 206, (900, 100), {"Content-Range": "bytes 900-999/1000"}),
    ("bytes=-10", 206, (990, 10), {"Content-Range": "bytes 990-999/1000"}),
    ("bytes=990-5000", 206, (990, 10), {"Content-Range": "bytes 990-999/1000"}),
    ("bytes=0-1,5-6", 200, (0, 1000), {}),   # several ranges: the whole file
    ("items=0-1", 200, (0, 1000), {}),
])
def test_file_responses_serve_one_byte_range(tmp_path: Path, header: str, status: int,
                                             part: tuple[int, int], extra: dict[str, str]) -> None:
    path = tmp_path / "clip.mp4"
    path.write_bytes(bytes(1000))
    response = Response.file(path, Request("GET", "/", headers={"range": header}), "video/mp4")
    assert response.status == status
    assert response.body == FileSlice(path, *part)
    assert response.headers == {"Accept-Ranges": "bytes", **extra}


def test_file_ranges_past_the_end_and_missing_files(tmp_path: Path) -> None:
    path = tmp_path / "clip.mp4"
    path.write_bytes(bytes(1000))
    with pytest.raises(HttpError) as past:
        Response.file(path, Request("GET", "/", headers={"range": "bytes=1000-"}), "video/mp4")
    assert past.value.status == 416 and past.value.headers == {"Content-Range": "bytes */1000"}
    with pytest.raises(HttpError) as missing:
        Response.file(tmp_path / "gone.mp4", Request("GET", "/"), "video/mp4")
    assert missing.value.status == 404
