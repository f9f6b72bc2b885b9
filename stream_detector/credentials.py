"""Credentials: where a URL keeps its user name and password, the URL shown without the password,
and text (log lines, a child process's messages) with every known secret replaced by ***.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterable
from urllib.parse import quote, unquote

MASK = "***"
MIN_SECRET = 4  # shorter values would mask ordinary words in every line; such a password is no secret


def split_userinfo(uri: str) -> tuple[str, str, str] | None:
    """(scheme://, userinfo, the rest) of a URL with an '@', else None. The userinfo runs to the
    last '@', so a password holding '/', '?', '#' or '@' unencoded is still all of it."""
    start = uri.find("://")
    if start < 0:
        return None
    after = uri[start + 3:]
    at = after.rfind("@")
    if at < 0:
        return None
    return uri[:start + 3], after[:at], after[at + 1:]


def url_password(uri: str) -> str:
    """The password of a URL as written (percent-encoded or not); "" when it has none."""
    parts = split_userinfo(uri)
    return parts[1].partition(":")[2] if parts and ":" in parts[1] else ""


def unencoded_userinfo(uri: str) -> bool:
    """True when the user name or password holds '/', '?', '#' or '@' unencoded: every URL parser
    (FFmpeg's too) would end it there and read the rest as host, path or fragment."""
    parts = split_userinfo(uri)
    return parts is not None and ":" in parts[1] and any(c in parts[1] for c in "/?#@")


def redact(uri: str) -> str:
    """The URI with its password replaced by ***, whatever characters the password holds."""
    parts = split_userinfo(uri)
    if parts is None or ":" not in parts[1]:
        return uri
    scheme, userinfo, rest = parts
    return f"{scheme}{userinfo.partition(':')[0]}:{MASK}@{rest}"


class Scrubber:
    """Known secrets, and text with each of them (as written, percent-decoded and percent-encoded)
    replaced by ***. Secrets are only ever added: a value in use before a reload may still be in
    a child's last words after it."""

    def __init__(self, secrets: Iterable[str] = ()) -> None:
        self._lock = threading.Lock()
        self._secrets: tuple[str, ...] = ()
        self.add(secrets)

    def add(self, secrets: Iterable[str]) -> None:
        forms = set()
        for secret in secrets:
            forms |= {secret, unquote(secret), quote(secret, safe="")}
        with self._lock:
            known = set(self._secrets) | {f for f in forms if len(f) >= MIN_SECRET}
            self._secrets = tuple(sorted(known, key=len, reverse=True))  # longest first

    def __call__(self, text: str) -> str:
        for secret in self._secrets:
            if secret in text:
                text = text.replace(secret, MASK)
        return text


class ScrubbingFormatter(logging.Formatter):
    """A log formatter whose lines (traceback included) pass through a Scrubber: whatever a module
    or a library logs, no known secret reaches the log."""

    def __init__(self, scrub: Scrubber, fmt: str | None = None) -> None:
        super().__init__(fmt)
        self.scrub = scrub

    def format(self, record: logging.LogRecord) -> str:
        return self.scrub(super().format(record))
