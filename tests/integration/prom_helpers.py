"""A real Prometheus server for tests, and the PromQL found in the dashboard and alert rules."""

from __future__ import annotations

import json
import re
import shutil
import socket
import subprocess
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

T = TypeVar("T")

DEPLOY = Path(__file__).resolve().parents[2] / "deploy"
PROM_DIR = DEPLOY / "prometheus"
DASHBOARD = DEPLOY / "grafana" / "dashboards" / "stream-detector.json"

# Grafana variables in dashboard queries, replaced by what Grafana would send for "All".
GRAFANA_VARIABLES = {"$host": ".*", "$camera": ".*", "$__rate_interval": "1m", "$__interval": "15s"}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def require_binary(name: str) -> str:
    """Path of a service binary. A missing one fails the test: ./dev setup installs it."""
    path = shutil.which(name)
    assert path is not None, f"{name} not found on PATH: install Debian's prometheus package (./dev setup)"
    return path


def wait_for(check: Callable[[], T | None], timeout: float, what: str, interval: float = 0.25) -> T:
    """Poll `check` until it returns something other than None (or falsy), else fail naming `what`."""
    deadline = time.monotonic() + timeout
    while True:
        result = check()
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(interval)


class Prometheus:
    """One Prometheus process on a free loopback port, with its data and log under `workdir`."""

    def __init__(self, config: Path, workdir: Path) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log_path = workdir / "prometheus.log"
        self._log = open(self.log_path, "wb")
        self.proc = subprocess.Popen(
            [require_binary("prometheus"), f"--config.file={config}",
             f"--storage.tsdb.path={workdir / 'data'}", f"--web.listen-address=127.0.0.1:{self.port}"],
            stdout=self._log, stderr=subprocess.STDOUT)
        try:
            wait_for(self._ready, 30, f"Prometheus to start (log: {self.log_path})")
        except BaseException:
            self.stop()  # a failed start must not leave the process behind
            raise

    def _ready(self) -> bool:
        assert self.proc.poll() is None, f"Prometheus exited:\n{self.log_tail()}"
        try:
            with urllib.request.urlopen(f"{self.url}/-/ready", timeout=2) as resp:
                return resp.status == 200
        except (urllib.error.URLError, ConnectionError):
            return False

    def log_tail(self, lines: int = 30) -> str:
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])

    def api(self, path: str, **params: str) -> Any:
        query = f"?{urllib.parse.urlencode(params)}" if params else ""
        with urllib.request.urlopen(f"{self.url}/api/v1/{path}{query}", timeout=5) as resp:
            body = json.load(resp)
        assert body["status"] == "success", body
        return body["data"]

    def query(self, expr: str) -> list[dict[str, Any]]:
        """Instant query; the result vector (a PromQL error fails the test with the expression)."""
        try:
            data = self.api("query", query=expr)
        except urllib.error.HTTPError as err:
            raise AssertionError(f"Prometheus rejected {expr!r}: {err.read().decode()}") from None
        assert data["resultType"] == "vector", (expr, data["resultType"])
        return list(data["result"])

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(timeout=10)
        self._log.close()


def dashboard_queries(path: Path) -> list[tuple[str, str]]:
    """(panel title, PromQL) for every target, with Grafana's variables substituted."""
    dash = json.loads(path.read_text())
    out = []
    for panel in dash["panels"]:
        for target in panel.get("targets", []):
            expr = target["expr"]
            for var, value in GRAFANA_VARIABLES.items():
                expr = expr.replace(var, value)
            assert "$" not in expr, f"unknown Grafana variable in {target['expr']!r}"
            out.append((panel["title"], expr))
    return out


COMPARISON = re.compile(r"^(?P<query>.+?)\s+(?P<op>==|!=|>=|<=|>|<)\s+(?P<threshold>-?[0-9.eE+]+)$", re.S)


def split_alert(expr: str) -> tuple[str, str, float]:
    """Split an alert expression shaped '<query> <op> <threshold>' into its parts."""
    match = COMPARISON.match(expr.strip())
    assert match is not None, f"alert expression is not '<query> <op> <threshold>': {expr!r}"
    return match["query"], match["op"], float(match["threshold"])


def scrape_config(port: int) -> str:
    """The repository's prometheus.yml, pointed at 127.0.0.1:`port` and scraping every second."""
    text = (PROM_DIR / "prometheus.yml").read_text()
    for old, new in [("scrape_interval: 15s", "scrape_interval: 1s"),
                     ("evaluation_interval: 15s", "evaluation_interval: 1s"),
                     ('"stream-detector:9108"', f'"127.0.0.1:{port}"')]:
        assert text.count(old) == 1, f"deploy/prometheus/prometheus.yml: expected one {old!r}"
        text = text.replace(old, new)
    return text


def start_prometheus(target_port: int, workdir: Path) -> Prometheus:
    """Prometheus with the repository's config and alert rules, scraping 127.0.0.1:`target_port`."""
    (workdir / "alerts.yml").write_bytes((PROM_DIR / "alerts.yml").read_bytes())
    (workdir / "prometheus.yml").write_text(scrape_config(target_port))
    return Prometheus(workdir / "prometheus.yml", workdir)


def wait_for_scrapes(prom: Prometheus, n: int = 3, timeout: float = 20) -> None:
    """rate() and histogram_quantile() need two samples; three leaves a margin."""
    wait_for(lambda: prom.query(f'count_over_time(up{{job="stream-detector"}}[5m]) >= {n}'
                                ' and up{job="stream-detector"} == 1'),
             timeout, f"{n} successful scrapes\n{prom.log_tail()}")


def alert_rules(prom: Prometheus) -> dict[str, dict[str, Any]]:
    groups = prom.api("rules", type="alert")["groups"]
    return {rule["name"]: rule for group in groups for rule in group["rules"]}
