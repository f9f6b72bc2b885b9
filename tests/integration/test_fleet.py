"""A fleet, as deploy/ describes it: two daemons as two hosts (each in its own UTS namespace, so
the default config gives each its own node id; `node_id` where namespaces are not allowed), with
the same camera name and the default [mqtt] table but for the broker's port, on one site
mosquitto bridged to a central one (deploy/mosquitto/bridge.conf) and one Prometheus finding them
through file-based discovery (deploy/prometheus/fleet/). kill -9 of one host leaves the other's
cameras available; each host's series stay under its own instance; the central broker has both
hosts' events; the alert for the killed host names it.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from daemon_helpers import ROOT, DaemonProcess, write_clip, write_config
from mqtt_broker import Broker, running_broker, subscribed
from prom_helpers import Prometheus, free_port, require_binary, wait_for

from stream_detector.capture import Injection

pytestmark = pytest.mark.integration

DEPLOY = ROOT / "deploy"
HOSTS = ("host-a", "host-b")


def uts_namespaces() -> bool:
    """Whether this machine lets us give a process its own host name (root, unshare allowed)."""
    if os.geteuid() != 0 or shutil.which("unshare") is None:
        return False
    done = subprocess.run(["unshare", "-u", "hostname", "probe"], capture_output=True, check=False)
    return done.returncode == 0


def bridge_config(central_port: int) -> str:
    """deploy/mosquitto/bridge.conf, pointed at the central broker on loopback."""
    text = (DEPLOY / "mosquitto" / "bridge.conf").read_text()
    old = "address central-broker.example:1883"
    assert text.count(old) == 1
    return text.replace(old, f"address 127.0.0.1:{central_port}").replace("restart_timeout 2 30",
                                                                          "restart_timeout 1 2")


def fleet_prometheus(workdir: Path, ports: list[int]) -> Prometheus:
    """deploy/prometheus/fleet/prometheus.yml with its alert rules, scraping every second, and a
    targets file naming both hosts."""
    folder = workdir / "fleet"
    (folder / "targets").mkdir(parents=True)
    shutil.copy(DEPLOY / "prometheus" / "alerts.yml", workdir / "alerts.yml")
    text = (DEPLOY / "prometheus" / "fleet" / "prometheus.yml").read_text()
    for old, new in [("scrape_interval: 15s", "scrape_interval: 1s"),
                     ("evaluation_interval: 15s", "evaluation_interval: 1s"),
                     ("refresh_interval: 1m", "refresh_interval: 1s")]:
        assert text.count(old) == 1, old
        text = text.replace(old, new)
    (folder / "prometheus.yml").write_text(text)
    targets = [{"targets": [f"127.0.0.1:{port}" for port in ports], "labels": {"site": "test"}}]
    (folder / "targets" / "test.yml").write_text(json.dumps(targets))  # JSON is YAML
    return Prometheus(folder / "prometheus.yml", workdir)


@pytest.fixture()
def brokers(tmp_path: Path) -> Iterator[tuple[Broker, Broker]]:
    for name in ("central", "site"):
        (tmp_path / name).mkdir()
    with running_broker(tmp_path / "central") as central:
        with running_broker(tmp_path / "site", extra=bridge_config(central.port)) as site:
            yield site, central


def test_the_promtool_accepts_the_fleet_configs() -> None:
    promtool = require_binary("promtool")
    for name in ("prometheus.yml", "federation.yml"):
        done = subprocess.run([promtool, "check", "config", str(DEPLOY / "prometheus" / "fleet" / name)],
                              capture_output=True, text=True, check=False)
        assert done.returncode == 0, done.stdout + done.stderr


def test_two_hosts_one_broker_one_prometheus_one_killed(
        tmp_path: Path, brokers: tuple[Broker, Broker], vtest: Path) -> None:
    site, central = brokers
    clip = write_clip(vtest, tmp_path / "injected.avi", 400, 120, injection=Injection(40, 80))
    namespaces = uts_namespaces()
    daemons: dict[str, DaemonProcess] = {}
    ports = {host: free_port() for host in HOSTS}
    with subscribed(central.port, "stream-detector/#") as up_there, \
            subscribed(site.port, "stream-detector/#") as here:
        try:
            for host in HOSTS:
                doc: dict[str, Any] = {  # the default config but for where things are
                    "cameras": {"front": {"source": str(clip), "loop": True}},
                    "mqtt": {"port": site.port},
                    "metrics": {"port": ports[host]},
                    "storage": {"path": str(tmp_path / host / "store")},
                }
                if not namespaces:
                    doc["node_id"] = host
                (tmp_path / host).mkdir()
                config = write_config(tmp_path / host / "config.toml", doc)
                wrapper = (["unshare", "-u", "sh", "-c", f'hostname {host} && exec "$@"', "sh"]
                           if namespaces else None)
                daemons[host] = DaemonProcess(config, ports[host], tmp_path / host,
                                              wrapper=wrapper)
            prom = fleet_prometheus(tmp_path / "prometheus", list(ports.values()))
            try:
                for host in HOSTS:  # each host's event reaches the central broker
                    up_there.wait_for(lambda m, h=host: any(
                        t == f"stream-detector/{h}/events" and json.loads(p)["after"]["host"] == h
                        for t, p, _ in m), timeout=90)
                def both() -> list[dict[str, Any]] | None:
                    found = prom.query('sum by (instance) '
                                       '(stream_detector_frames_scored_total{job="stream-detector"})')
                    return found if len(found) == 2 else None

                series = wait_for(both, 30, "both hosts' series")
                assert {s["metric"]["instance"] for s in series} == {
                    f"127.0.0.1:{port}" for port in ports.values()}

                os.kill(daemons["host-a"].proc.pid, signal.SIGKILL)  # host-a dies
                daemons["host-a"].proc.wait(10)
                killed = f"127.0.0.1:{ports['host-a']}"
                alert = wait_for(lambda: next((a for a in prom.api("alerts")["alerts"]
                                               if a["labels"]["alertname"] == "StreamDetectorDown"
                                               and a["labels"]["instance"] == killed), None),
                                 30, "the alert for the killed host")
                assert killed in alert["annotations"]["summary"]
                scored = daemons["host-b"].value("stream_detector_frames_scored_total",
                                                 camera="front") or 0
                daemons["host-b"].wait_metric("stream_detector_frames_scored_total",
                                              lambda v: v > scored + 5, 20, camera="front")
            finally:
                prom.stop()
            for sub in (here, up_there):  # on the site broker and, through the bridge, centrally
                sub.wait_for(lambda m: ("stream-detector/host-a/available", b"offline")
                             in [(t, p) for t, p, _ in m], timeout=20)
            for port in (site.port, central.port):
                with subscribed(port, "stream-detector/+/available") as late:
                    states = dict((t, p) for t, p, _ in late.wait_for(lambda m: len(m) >= 2))
                assert states == {"stream-detector/host-a/available": b"offline",
                                  "stream-detector/host-b/available": b"online"}, port
        finally:
            for daemon in daemons.values():
                daemon.close()
    topics = {t for t, _, _ in here.messages}
    assert all(t.split("/")[1] in HOSTS for t in topics), topics  # no topic shared by both
    broker_log = (tmp_path / "site" / "mosquitto.log").read_text()
    assert all(f" as stream-detector-{host} " in broker_log for host in HOSTS)  # own client ids
