"""Review end to end on the real daemon: the demo's event gets a clip that shows the injected object
from before its start to after its end, ready when `end` is published; the review page lists it in
a real browser (Debian's chromium, headless, driven by selenium through Debian's chromedriver),
plays its clip and stores a verdict set there; the API refuses bad input with one-line JSON."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pytest
from daemon_helpers import DaemonProcess, stored_events, write_config
from rtsp_helpers import free_port

pytestmark = pytest.mark.integration

CHROMIUM, CHROMEDRIVER = "/usr/bin/chromium", "/usr/bin/chromedriver"
# Chromium as root, without a network: no sandbox, and none of its own traffic to the outside.
CHROMIUM_FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update", "--disable-sync",
                  "--autoplay-policy=no-user-gesture-required", "--mute-audio")


class Demo:
    def __init__(self, daemon: DaemonProcess, end: dict[str, Any], seen: dict[str, Any]) -> None:
        self.daemon, self.end, self.seen = daemon, end, seen

    def request(self, path: str, method: str = "GET", body: bytes | None = None,
                headers: dict[str, str] | None = None) -> tuple[int, dict[str, str], bytes]:
        req = urllib.request.Request(f"http://127.0.0.1:{self.daemon.port}{path}", data=body,
                                     method=method, headers=headers or {})
        try:
            with urllib.request.urlopen(req, timeout=10) as resp:
                return resp.status, dict(resp.headers), resp.read()
        except urllib.error.HTTPError as err:
            return err.code, dict(err.headers), err.read()


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Demo]:
    """`./dev demo`'s camera (its embedded settings) until its first event's end is published;
    what lay on disk at that moment is recorded for the tests."""
    workdir = tmp_path_factory.mktemp("review")
    port = free_port()
    config = write_config(workdir / "demo.toml", {
        "cameras": {"demo": {"source": "demo", "min_duration": 0.3, "cooldown": 1.0,
                             "update_interval": 2.0}},
        "metrics": {"port": port}, "storage": {"path": str(workdir / "store")}})
    daemon = DaemonProcess(config, port, workdir)
    try:
        daemon.wait_up()
        deadline = time.monotonic() + 90  # the object enters 30 s into the demo's loop
        end = None
        while end is None:
            daemon.assert_running()
            assert time.monotonic() < deadline, daemon.log()[-3000:]
            end = next((e for e in daemon.events_on_stdout() if e["type"] == "end"), None)
            if end is None:
                time.sleep(0.05)
        clip = end["after"]["clip"]
        seen = {"clip_exists": bool(clip) and Path(clip).is_file(),
                "clip_bytes": Path(clip).stat().st_size if clip else 0}
        yield Demo(daemon, end, seen)
    finally:
        daemon.close()


def test_the_demo_event_has_a_clip_showing_the_object_from_before_start_to_after_end(demo: Demo) -> None:
    after = demo.end["after"]
    assert after["has_clip"] and demo.seen["clip_exists"], after  # ready when `end` is published
    assert after["clip_start"] <= after["start_time"] - 4.0, after
    probe = subprocess.run(["ffprobe", "-v", "error", "-show_entries", "format=duration",
                            "-of", "json", after["clip"]], capture_output=True, text=True,
                           check=True)
    duration = float(json.loads(probe.stdout)["format"]["duration"])
    assert after["clip_start"] + duration >= after["end_time"] + 4.0, (after, duration)
    # The injected disc is pure white: frames inside the event hold far more of it than before.
    cap = cv2.VideoCapture(after["clip"])
    fps = cap.get(cv2.CAP_PROP_FPS)
    white = []
    while True:
        ok, frame = cap.read()
        if not ok:
            break
        white.append(int(np.all(frame >= 235, axis=2).sum()))
    before = int(np.median(white[: int(2 * fps)]))
    inside = white[int((after["start_time"] - after["clip_start"]) * fps):][: int(5 * fps)]
    assert max(inside) > before + 800, (before, inside)


def test_the_page_lists_the_event_plays_its_clip_and_stores_a_verdict(
        demo: Demo, tmp_path: Path) -> None:
    from selenium import webdriver
    from selenium.webdriver.chrome.options import Options
    from selenium.webdriver.chrome.service import Service
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    for program in (CHROMIUM, CHROMEDRIVER):
        if not os.access(program, os.X_OK):
            pytest.fail(f"{program} missing: install Debian's chromium and chromium-driver "
                        f"(./dev setup does)")
    options = Options()
    options.binary_location = CHROMIUM
    for flag in (*CHROMIUM_FLAGS, f"--user-data-dir={tmp_path / 'profile'}"):
        options.add_argument(flag)
    event_id = demo.end["after"]["id"]
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    try:
        driver.set_page_load_timeout(30)
        driver.get(f"http://127.0.0.1:{demo.daemon.port}/")
        wait = WebDriverWait(driver, 20)
        row = wait.until(lambda d: d.find_element(By.CSS_SELECTOR, f'tr[data-id="{event_id}"]'))
        assert "demo" in row.text
        row.click()
        wait.until(lambda d: d.find_element(By.ID, "d-clip").get_attribute("src"))
        driver.execute_script("const v = document.getElementById('d-clip'); v.muted = true; "
                              "v.play();")
        played = wait.until(lambda d: d.execute_script(
            "return document.getElementById('d-clip').currentTime;") > 0.5)
        assert played
        strip = driver.find_element(By.ID, "cameras").text
        assert "demo" in strip and "up" in strip, strip
        driver.find_element(By.ID, "v-false").click()
        wait.until(lambda d: d.find_element(By.ID, "d-verdict").text == "false alarm")
    finally:
        driver.quit()
    status, _, body = demo.request(f"/api/events/{event_id}")
    assert status == 200 and json.loads(body)["verdict"] == "false_alarm"
    rows = [r for r in stored_events(demo.daemon.config) if r["id"] == event_id]
    assert rows and {r["verdict"] for r in rows} == {"false_alarm"}  # `events` shows it
    assert "verdict" in {r["type"] for r in rows}


def test_the_api_refuses_bad_requests_with_one_line_json(demo: Demo) -> None:
    event_id = demo.end["after"]["id"]
    cases = [
        ("GET", "/api/events/..%2F..%2Fetc%2Fpasswd/clip.mp4", None, {}, 404),
        ("GET", "/api/events/nosuchevent/snapshot.jpg", None, {}, 404),
        ("GET", "/api/events?limit=0", None, {}, 400),
        ("GET", "/api/events?since=yesterday", None, {}, 400),
        ("GET", "/api/events?verdict=maybe", None, {}, 400),
        ("GET", "/api/events?cameras=demo", None, {}, 400),
        ("POST", f"/api/events/{event_id}/verdict", b'{"verdict": "maybe"}', {}, 400),
        ("POST", f"/api/events/{event_id}/verdict", b"not json", {}, 400),
        ("POST", f"/api/events/{event_id}/verdict", b'{"verdict": "confirmed"}',
         {"Origin": "http://evil.example"}, 403),
        ("POST", f"/api/events/{event_id}/verdict", b'{"verdict": "confirmed"}',
         {"Sec-Fetch-Site": "cross-site"}, 403),
        ("POST", f"/api/events/{event_id}/verdict", b'{"verdict": "confirmed"}',
         {"Content-Type": "text/plain"}, 415),
        ("GET", "/api/events", None, {"Host": "attacker.example:80"}, 403),
        ("GET", "/static/..%2F..%2Fapi.py", None, {}, 404),
    ]
    for method, path, body, headers, want in cases:
        headers = {"Content-Type": "application/json", **headers} if method == "POST" else headers
        status, got_headers, text = demo.request(path, method, body, headers)
        assert status == want, (method, path, status, text)
        assert got_headers["Content-Type"] == "application/json"
        assert "\n" not in text.decode() and "error" in json.loads(text), text
    status, headers, part = demo.request(f"/api/events/{event_id}/clip.mp4",
                                         headers={"Range": "bytes=100-199"})
    assert status == 206 and len(part) == 100, status
    assert headers["Content-Range"] == f"bytes 100-199/{demo.seen['clip_bytes']}"
    assert Path(demo.end["after"]["clip"]).read_bytes()[100:200] == part


def test_kill_during_a_clips_assembly_leaves_no_half_clip_and_the_event_ends_at_restart(
        tmp_path: Path, vtest: Path) -> None:
    """ffmpeg's join is made to write half a clip and hang (a wrapper on PATH); kill -9 then: at
    restart the event is ended ("restart"), the half clip is gone and none is served."""
    from daemon_helpers import write_clip

    from stream_detector.capture import Injection

    clip = write_clip(vtest, tmp_path / "walk.avi", 0, 200, Injection(30, 110))
    shim = tmp_path / "bin"
    shim.mkdir()
    real = shutil.which("ffmpeg")
    (shim / "ffmpeg").write_text(
        "#!/bin/sh\ncase \"$*\" in *concat*) for last; do :; done; "
        "head -c 5000 /dev/urandom > \"$last\"; touch " + str(tmp_path / "joining") +
        "; exec sleep 60;; esac\nexec " + str(real) + " \"$@\"\n")
    (shim / "ffmpeg").chmod(0o755)
    port = free_port()
    store = tmp_path / "store"
    config = write_config(tmp_path / "kill.toml", {
        "cameras": {"door": {"source": str(clip), "min_duration": 0.3, "cooldown": 1.0,
                             "post_capture": 1.0}},
        "metrics": {"port": port}, "storage": {"path": str(store)}})
    env = {"PATH": f"{shim}:{os.environ['PATH']}"}
    daemon = DaemonProcess(config, port, tmp_path, env=env)
    try:
        daemon.wait_up()
        deadline = time.monotonic() + 60
        while not (tmp_path / "joining").exists():
            daemon.assert_running()
            assert time.monotonic() < deadline, daemon.log()[-3000:]
            time.sleep(0.05)
        halves = list((store / "clips").glob(".*.tmp"))
        assert halves, list((store / "clips").iterdir())  # caught in the middle of the join
        daemon.proc.kill()
        daemon.proc.wait(10)
    finally:
        daemon.close()
    assert not [e for e in daemon.events_on_stdout() if e["type"] == "end"]
    restarted = DaemonProcess(config, port, tmp_path, name="restarted")
    try:
        restarted.wait_up()
        deadline = time.monotonic() + 30
        while not (ends := [e for e in restarted.events_on_stdout() if e["type"] == "end"]):
            restarted.assert_running()
            assert time.monotonic() < deadline, restarted.log()[-3000:]
            time.sleep(0.1)
        after = ends[0]["after"]
        assert after["end_reason"] == "restart" and not after["has_clip"], after
        assert not list((store / "clips").glob(".*")), list((store / "clips").iterdir())
        status, _ = restarted.get(f"/api/events/{after['id']}/clip.mp4")
        assert status == 404
    finally:
        restarted.stop(20)
        restarted.close()


def test_an_rtsp_cameras_clip_is_a_copy_of_its_stream(tmp_path: Path, vtest: Path) -> None:
    """The tests' GStreamer camera recorded by a StreamRecorder and an event's clip joined from the
    segments: the clip's H.264 carries the camera's own encoder settings (x264enc's SEI), not
    those of an encode of ours, and the recorder's ffmpeg only copies."""
    from rtsp_helpers import RtspServer, require_ffmpeg, require_gi_python

    from stream_detector.capture import SegmentRing, StreamRecorder
    from stream_detector.messages import Event
    from stream_detector.outputs import Clipper

    require_gi_python()
    require_ffmpeg()
    server = RtspServer(vtest, tmp_path / "rtsp.log")
    server.start()
    ring = SegmentRing(tmp_path / "ring", keep=60.0)
    states: list[bool] = []
    recorder = StreamRecorder("cam", server.url, ring, lambda cam, up: states.append(up))
    assert "copy" in recorder.command(0) and "-c" in recorder.command(0)
    recorder.start()
    try:
        deadline = time.monotonic() + 30
        while len(ring.covering(0, 2e9)) < 4:
            assert time.monotonic() < deadline, (tmp_path / "rtsp.log").read_text()[-2000:]
            time.sleep(0.2)
        segments = ring.covering(0, 2e9)
        results = []
        clipper = Clipper(tmp_path / "clips")
        clipper.camera("cam", ring, pre=0.5, post=0.5)
        start, end = segments[1].start + 0.2, segments[2].end - 0.2
        clipper.finish(Event("ev1", "cam", "end", start, 0.0, end, 0.0, 3.0, 1, None, 2.0),
                       results.append)
        clipper._make_due()
    finally:
        recorder.stop()
        server.kill()
    assert states == [True]
    (result,) = results
    assert result.path and result.start is not None and result.start <= start - 0.5 + 2.5
    # Copied, the clip's frames are the camera's, pixel for pixel; any encode would change them.
    frames = decoded_hashes(Path(result.path))
    recorded = [h for seg in ring.covering(0, 2e9) for h in decoded_hashes(seg.path)]
    assert len(frames) >= 20
    at = recorded.index(frames[0])
    assert recorded[at:at + len(frames)] == frames


def decoded_hashes(path: Path) -> list[str]:
    """The MD5 of every decoded frame of a video."""
    done = subprocess.run(["ffmpeg", "-v", "error", "-i", str(path), "-map", "0:v", "-f",
                           "framemd5", "-"], capture_output=True, text=True, check=True)
    return [line.rsplit(",", 1)[1].strip() for line in done.stdout.splitlines()
            if line and not line.startswith("#")]
