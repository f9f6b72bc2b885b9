"""Credentials: a URL's password found and masked whatever it holds, and known secrets scrubbed
from any text, log lines and their tracebacks included."""

from __future__ import annotations

import io
import logging

import pytest

from stream_detector.credentials import (
    Scrubber,
    ScrubbingFormatter,
    redact,
    unencoded_userinfo,
    url_password,
)


@pytest.mark.parametrize(("uri", "password", "shown"), [
    ("rtsp://admin:s3cret@cam:554/live", "s3cret", "rtsp://admin:***@cam:554/live"),
    ("rtsp://admin:p#ss@cam/live", "p#ss", "rtsp://admin:***@cam/live"),
    ("rtsp://admin:p?ss@cam/live?x=1", "p?ss", "rtsp://admin:***@cam/live?x=1"),
    ("rtsp://admin:pa/ss@cam/live", "pa/ss", "rtsp://admin:***@cam/live"),
    ("rtsp://admin:p@ss@cam/live", "p@ss", "rtsp://admin:***@cam/live"),
    ("rtsp://admin:p%23ss@[::1]:554/live", "p%23ss", "rtsp://admin:***@[::1]:554/live"),
    ("rtsp://admin@cam/live", "", "rtsp://admin@cam/live"),   # a user name is no secret
    ("rtsp://cam/live", "", "rtsp://cam/live"),
    ("/var/video/a@b.mp4", "", "/var/video/a@b.mp4"),
    ("0", "", "0"),
])
def test_the_password_is_found_and_masked_whatever_it_holds(uri: str, password: str,
                                                            shown: str) -> None:
    assert url_password(uri) == password
    assert redact(uri) == shown
    if password:
        assert password not in redact(uri)


def test_unencoded_characters_that_end_a_password_early_are_detected() -> None:
    assert unencoded_userinfo("rtsp://u:p#ss@cam/live")
    assert unencoded_userinfo("rtsp://u:pa/ss@cam/live")
    assert not unencoded_userinfo("rtsp://u:p%23ss@cam/live")
    assert not unencoded_userinfo("rtsp://cam/live?user=a@b")  # no password: nothing to guard


def test_scrubber_masks_every_form_of_a_secret_and_never_forgets_one() -> None:
    scrub = Scrubber(["p#ss/w0rd"])
    line = "open p#ss/w0rd failed; url rtsp://u:p%23ss%2Fw0rd@cam; again p#ss/w0rd"
    assert scrub(line) == "open *** failed; url rtsp://u:***@cam; again ***"
    scrub.add(["n3w-secret"])
    assert scrub("p#ss/w0rd n3w-secret") == "*** ***"
    assert Scrubber(["abc"])("abc abc") == "abc abc"  # too short to be told from words


def test_log_lines_and_tracebacks_never_show_a_secret() -> None:
    out = io.StringIO()
    handler = logging.StreamHandler(out)
    handler.setFormatter(ScrubbingFormatter(Scrubber(["hunter22"]), "%(levelname)s %(message)s"))
    log = logging.getLogger("test_credentials")
    log.addHandler(handler)
    log.setLevel(logging.DEBUG)
    try:
        log.debug("password is %s", "hunter22")
        try:
            raise ValueError("bad hunter22")
        except ValueError:
            log.exception("failed")
    finally:
        log.removeHandler(handler)
    text = out.getvalue()
    assert "hunter22" not in text and "password is ***" in text and "ValueError: bad ***" in text
