"""Sources decoded by a child process (ffmpeg, or OpenCV in its own process): starting it with
its secret on a pipe instead of its command line, reading its frames under deadlines, its last
words for messages, and stopping it from any thread.
"""

from __future__ import annotations

import os
import re
import selectors
import subprocess
import threading
import time
from collections.abc import Callable
from typing import TypeVar

from stream_detector.capture.source import LiveSource
from stream_detector.credentials import MASK, Scrubber, url_password
from stream_detector.errors import SourceError

_CREDENTIALS = re.compile(r"(://[^/:@\s]*:)[^@\s]*@")
_LOG_PREFIX = re.compile(r"^\[[^\]]* @ 0x[0-9a-f]+\] ")
KEEP = 4096  # bytes of a child's stderr kept for messages

# A child is given what it must not show on its command line (a camera URL with its password)
# as a file descriptor it reads: only its user and root can read another process's descriptors,
# while every local user can list command lines (`ps`).
Command = Callable[[int], list[str]]  # the child's argv, given the descriptor its secret is on
T = TypeVar("T")


class StderrTail(threading.Thread):
    """Drains a child's stderr so it can never block on a full pipe; keeps the end for messages."""

    def __init__(self, fd: int, redact_text: Callable[[str], str]) -> None:
        super().__init__(name="child-stderr", daemon=True)  # only reads a pipe: safe at exit
        self.fd = fd
        self.redact_text = redact_text
        self._tail = b""
        self._lock = threading.Lock()

    def run(self) -> None:
        while True:
            try:
                chunk = os.read(self.fd, 4096)
            except OSError:
                return
            if not chunk:
                return
            with self._lock:
                self._tail = (self._tail + chunk)[-KEEP:]

    def reason(self) -> str:
        """The child's last messages on one line, credentials hidden; empty if it said nothing."""
        with self._lock:
            return last_messages(self._tail, self.redact_text)


def last_messages(stderr: bytes, redact_text: Callable[[str], str]) -> str:
    """The last two lines a child wrote to stderr as one printable line, without FFmpeg's
    "[tcp @ 0x...]" prefixes, passed through `redact_text`, at most 300 characters."""
    text = stderr[-KEEP:].decode("utf-8", "replace")
    lines = [_LOG_PREFIX.sub("", line).strip() for line in re.split(r"[\r\n]+", text)]
    lines = ["".join(c if c.isprintable() else " " for c in line) for line in lines if line]
    joined = redact_text("; ".join(lines[-2:]))
    return joined if len(joined) <= 300 else joined[:297] + "..."


class ChildSource(LiveSource):
    """What a source whose frames come from a child process shares. Subclasses build the
    commands; this class runs them, reads their output with timeouts, and stops them.

    `interrupt` may be called from any thread (the capture loop abandoning a connection, the
    daemon stopping): it kills the child, so an open or read waiting on it returns at once."""

    KILL_AFTER = 1.0  # seconds between SIGTERM and SIGKILL when closing

    def __init__(self, uri: str, realtime: bool = True, loop: bool = False,
                 open_timeout: float = 10.0, read_timeout: float = 10.0) -> None:
        super().__init__(uri, realtime, loop, open_timeout, read_timeout)
        self._proc: subprocess.Popen[bytes] | None = None
        self._helper: subprocess.Popen[bytes] | None = None  # a probe run by open()
        self._stderr: StderrTail | None = None
        self._selector: selectors.BaseSelector | None = None
        self._interrupted = threading.Event()
        self._scrub = Scrubber([url_password(uri)])

    # --- any thread ----------------------------------------------------------------------------

    def interrupt(self) -> None:
        """Stop waiting: the running child (or probe) is killed; open() and grab() then fail."""
        self._interrupted.set()
        for proc in (self._proc, self._helper):
            if proc is not None and proc.poll() is None:
                try:
                    proc.kill()
                except OSError:
                    pass

    # --- the reader's thread ---------------------------------------------------------------------

    def _check_interrupted(self) -> None:
        if self._interrupted.is_set():
            raise SourceError(f"{self.name}: interrupted")

    def _with_secret(self, command: Command, secret: bytes) -> tuple[list[str], int]:
        """argv and the read end of a pipe holding `secret` (written now, so the child reads it
        whenever it likes; a secret is far below a pipe's 64 KiB)."""
        read_fd, write_fd = os.pipe()
        try:
            os.write(write_fd, secret)
        finally:
            os.close(write_fd)
        return command(read_fd), read_fd

    def _run(self, command: Command, secret: bytes, timeout: float) -> tuple[int, bytes, bytes]:
        """Run a helper (a probe) to its end within `timeout`: (status, stdout, stderr). Killed
        on interrupt; a timeout is a SourceError."""
        self._check_interrupted()
        argv, fd = self._with_secret(command, secret)
        try:
            proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                    stderr=subprocess.PIPE, pass_fds=(fd,), start_new_session=True)
        except OSError as exc:
            raise SourceError(f"{self.name}: cannot run {argv[0]} ({exc.strerror})") from None
        finally:
            os.close(fd)
        self._helper = proc
        deadline = time.monotonic() + timeout
        try:
            while True:
                try:
                    out, err = proc.communicate(timeout=min(0.1, max(0.0, deadline - time.monotonic())))
                    break
                except subprocess.TimeoutExpired:
                    if self._interrupted.is_set() or time.monotonic() >= deadline:
                        proc.kill()
                        proc.communicate()
                        self._check_interrupted()
                        raise SourceError(f"{self._what()} (no answer within {timeout:g}s)") from None
        finally:
            self._helper = None
        self._check_interrupted()
        return proc.returncode, out, err

    def _spawn(self, command: Command, secret: bytes) -> None:
        """Start the child that streams frames to its stdout."""
        self._check_interrupted()
        argv, fd = self._with_secret(command, secret)
        try:
            # Its own session: a terminal's Ctrl-C goes to the daemon, which then closes the child.
            proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                    stderr=subprocess.PIPE, bufsize=0, pass_fds=(fd,),
                                    start_new_session=True)
        except OSError as exc:
            raise SourceError(f"{self.name}: cannot run {argv[0]} ({exc.strerror})") from None
        finally:
            os.close(fd)
        assert proc.stdout is not None and proc.stderr is not None
        self._proc = proc
        if self._interrupted.is_set():  # interrupt() ran between the check and the assignment
            proc.kill()
        os.set_blocking(proc.stdout.fileno(), False)
        self._selector = selectors.DefaultSelector()
        self._selector.register(proc.stdout.fileno(), selectors.EVENT_READ)
        self._stderr = StderrTail(proc.stderr.fileno(), self._redact_text)
        self._stderr.start()

    def _first_frame(self, read: Callable[[float], T | None], timeout: float) -> T:
        """The child's first frame, read by `read` within `timeout` seconds; else the child is
        stopped and its own last words are the SourceError's reason."""
        frame = read(timeout)
        if frame is None:
            reason = (self._stop_reason(self._exit_status())
                      or f"no frame within {self.open_timeout:g}s")
            self.close()
            raise SourceError(f"{self._what()} ({reason})")
        self._opened_at = time.monotonic()
        return frame

    def _read_exact(self, size: int, timeout: float) -> bytearray | None:
        """`size` bytes from the child's stdout, or None at its end or after `timeout` seconds."""
        if self._proc is None or self._selector is None:
            return None
        assert self._proc.stdout is not None
        fd = self._proc.stdout.fileno()
        buf, got = bytearray(size), 0
        deadline = time.monotonic() + timeout
        while got < size:
            try:
                chunk = os.read(fd, size - got)
            except BlockingIOError:
                left = deadline - time.monotonic()
                if left <= 0 or not self._selector.select(left):
                    if time.monotonic() >= deadline:
                        return None
                continue
            except OSError:
                return None
            if not chunk:
                return None  # the child exited or closed its output
            buf[got:got + len(chunk)] = chunk
            got += len(chunk)
        return buf

    def _exit_status(self) -> int | None:
        """The child's exit status, waiting briefly for it to exit; None while it runs."""
        if self._proc is None:
            return None
        try:
            return self._proc.wait(0.5)
        except subprocess.TimeoutExpired:
            return None

    def _stop_reason(self, code: int | None) -> str:
        """Why the child that exited with `code` stopped, in its own words ("" while it runs)."""
        if code is None:
            return ""
        if self._stderr is not None:
            self._stderr.join(0.5)  # its last words may still be in the pipe
        said = self._stderr.reason() if self._stderr is not None else ""
        return said or f"{self._program()} exited with status {code}"

    def _program(self) -> str:
        return "the reader"

    def _what(self) -> str:
        return f"{self.name}: " + ("not a readable video" if self.kind == "file" else "cannot open")

    def close(self) -> None:
        """Stop the child and reap it: no zombie, no orphan left decoding."""
        proc, self._proc = self._proc, None
        if self._selector is not None:
            self._selector.close()
            self._selector = None
        if proc is None:
            return
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(self.KILL_AFTER)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        if self._stderr is not None:
            self._stderr.join(1.0)  # the child is gone, so its stderr ends now
            self._stderr = None
        for pipe in (proc.stdout, proc.stderr):
            if pipe is not None:
                pipe.close()

    def _redact_text(self, text: str) -> str:
        text = _CREDENTIALS.sub(rf"\1{MASK}@", text.replace(self.uri, self.name))
        return self._scrub(text)

