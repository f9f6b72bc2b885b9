"""Hostile HTTP clients against the real daemon: does /healthz answer every time, how many threads
and connections does the daemon hold, what reaches its log, and does scoring go on?

    python benchmarks/http_hostile.py --clients 200 --seconds 40 --json runs/hostile.json

Starts `python -m stream_detector run` on one looped file camera (metrics on a free loopback port),
then runs --clients clients in equal shares of four kinds, each reconnecting whenever the server
closes it: `slow` (a request head trickled a byte every 0.5 s), `idle` (connects, sends nothing),
`aborted` (asks for /metrics, then resets the connection at once) and `unread` (pipelines 50
/metrics requests and never reads). Meanwhile a probe asks /healthz every 0.25 s on a new connection
(2 s timeout) and a sampler reads the daemon's thread count (/proc) and its established connections
(/proc/net/tcp) every second. Prints one line of figures and writes them to --json.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import struct
import sys
import tempfile
import threading
import time
import urllib.request
from dataclasses import asdict, dataclass, field
from pathlib import Path

from capacity import VTEST, Daemon, HarnessError, child_env

KINDS = ("slow", "idle", "aborted", "unread")


@dataclass
class Figures:
    clients: int
    seconds: float
    probes: int = 0
    probe_failures: int = 0
    probe_max_s: float = 0.0
    probe_p99_s: float = 0.0
    threads_max: int = 0
    threads_before: int = 0
    connections_max: int = 0
    connections_after_s: dict[str, int] = field(default_factory=dict)
    idle_closed_after_max_s: float = 0.0
    log_lines: int = 0
    scored_fps_before: float = 0.0
    scored_fps_during: float = 0.0
    client_connects: dict[str, int] = field(default_factory=dict)


class Hostile:
    """The clients, the probe and the sampler, on threads of this process."""

    def __init__(self, port: int, pid: int, stop: threading.Event) -> None:
        self.port, self.pid, self.stop = port, pid, stop
        self.lock = threading.Lock()
        self.connects = dict.fromkeys(KINDS, 0)
        self.idle_closed: list[float] = []
        self.probes: list[float | None] = []  # seconds, None: failed
        self.threads: list[int] = []
        self.conns: list[int] = []

    def _connect(self, kind: str) -> socket.socket:
        with self.lock:
            self.connects[kind] += 1
        return socket.create_connection(("127.0.0.1", self.port), timeout=60)

    def client(self, kind: str) -> None:
        while not self.stop.is_set():
            try:
                getattr(self, kind)()
            except OSError:
                time.sleep(0.05)  # refused or reset: try again, as a hostile client would

    def slow(self) -> None:
        with self._connect("slow") as sock:
            for byte in b"GET /metrics HTTP/1.1\r\nHost: x\r\nX-Slow: " + b"a" * 1000:
                if self.stop.wait(0.5):
                    return
                sock.sendall(bytes([byte]))

    def idle(self) -> None:
        with self._connect("idle") as sock:
            start = time.monotonic()
            while not self.stop.is_set():
                sock.settimeout(0.5)
                try:
                    if not sock.recv(1024):
                        break
                except TimeoutError:
                    continue
            else:
                return
            with self.lock:
                self.idle_closed.append(time.monotonic() - start)

    def aborted(self) -> None:
        with self._connect("aborted") as sock:
            sock.sendall(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n")
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        self.stop.wait(0.05)

    def unread(self) -> None:
        with self._connect("unread") as sock:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
            sock.sendall(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n" * 50)
            while not self.stop.wait(1.0):
                try:
                    sock.send(b"")
                    if sock.recv(1, socket.MSG_PEEK | socket.MSG_DONTWAIT) == b"":
                        return
                except BlockingIOError:
                    continue

    def probe(self) -> None:
        url = f"http://127.0.0.1:{self.port}/healthz"
        while not self.stop.wait(0.25):
            start = time.monotonic()
            try:
                with urllib.request.urlopen(url, timeout=2) as resp:
                    ok = resp.status == 200
            except OSError:
                ok = False
            self.probes.append(time.monotonic() - start if ok else None)

    def sample(self) -> None:
        while not self.stop.wait(1.0):
            self.threads.append(threads_of(self.pid))
            self.conns.append(server_connections(self.port))


def threads_of(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("Threads:"):
            return int(line.split()[1])
    raise HarnessError("no Threads in /proc status")


def server_connections(port: int) -> int:
    """Established TCP connections whose local port is `port` (the server's side of them)."""
    count = 0
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for line in Path(table).read_text().splitlines()[1:]:
            local, state = line.split()[1], line.split()[3]
            if int(local.rsplit(":", 1)[1], 16) == port and state == "01":
                count += 1
    return count


def scored_rate(daemon: Daemon, seconds: float) -> float:
    def total() -> float:
        return sum(v for _, v in daemon.scrape().get("stream_detector_frames_scored_total", []))
    first = total()
    time.sleep(seconds)
    return (total() - first) / seconds


def run(args: argparse.Namespace, workdir: Path) -> Figures:
    config = workdir / "hostile.toml"
    config.write_text("\n".join([
        "[metrics]", 'host = "127.0.0.1"', "port = 0",
        "[storage]", f"path = {json.dumps(str(workdir / 'store'))}",
        "[cameras.c1]", f"source = {json.dumps(str(args.source))}", "loop = true", ""]))
    log = workdir / "daemon.log"
    daemon = Daemon(config, log, child_env())
    figures = Figures(args.clients, args.seconds)
    try:
        daemon.wait_metrics(120)
        port = int(daemon.url.rsplit(":", 1)[1].split("/")[0])
        time.sleep(args.warmup)
        window = min(10.0, args.seconds / 2)  # scored frames counted over this, mid-attack
        figures.scored_fps_before = round(scored_rate(daemon, window), 2)
        figures.threads_before = threads_of(daemon.proc.pid)
        lines_before = len(log.read_text(errors="replace").splitlines())
        stop = threading.Event()
        hostile = Hostile(port, daemon.proc.pid, stop)
        workers = [threading.Thread(target=hostile.client, args=(KINDS[i % len(KINDS)],),
                                    daemon=True) for i in range(args.clients)]
        workers += [threading.Thread(target=f, daemon=True) for f in (hostile.probe, hostile.sample)]
        for t in workers:
            t.start()
        time.sleep((args.seconds - window) / 2)
        figures.scored_fps_during = round(scored_rate(daemon, window), 2)
        time.sleep((args.seconds - window) / 2)
        stop.set()
        stopped = time.monotonic()
        for t in workers:
            t.join(5)
        for after in (1, 5):  # the clients are gone: what the server still holds
            time.sleep(max(0.0, stopped + after - time.monotonic()))
            figures.connections_after_s[str(after)] = server_connections(port)
        daemon.check_running("during the hostile run")
        figures.log_lines = len(log.read_text(errors="replace").splitlines()) - lines_before
        ok = sorted(p for p in hostile.probes if p is not None)
        figures.probes = len(hostile.probes)
        figures.probe_failures = len(hostile.probes) - len(ok)
        figures.probe_max_s = round(ok[-1], 3) if ok else 0.0
        figures.probe_p99_s = round(ok[int(0.99 * (len(ok) - 1))], 3) if ok else 0.0
        figures.threads_max = max(hostile.threads, default=0)
        figures.connections_max = max(hostile.conns, default=0)
        figures.idle_closed_after_max_s = round(max(hostile.idle_closed, default=0.0), 2)
        figures.client_connects = hostile.connects
        daemon.stop(30)
    finally:
        daemon.kill()
    return figures


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--clients", type=int, default=200)
    parser.add_argument("--seconds", type=float, default=40.0)
    parser.add_argument("--warmup", type=float, default=5.0)
    parser.add_argument("--source", type=Path, default=VTEST)
    parser.add_argument("--workdir", type=Path)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        workdir = args.workdir or Path(tmp)
        workdir.mkdir(parents=True, exist_ok=True)
        try:
            figures = run(args, workdir)
        except HarnessError as exc:
            print(f"http_hostile: {exc}", file=sys.stderr)
            return 1
    print(json.dumps(asdict(figures)))
    if args.json:
        args.json.write_text(json.dumps({"figures": asdict(figures), "cpus": os.cpu_count()},
                                        indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
