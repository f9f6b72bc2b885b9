"""The files in deploy/ stay in step with the code: config keys, unit settings, dashboard datasource."""

from __future__ import annotations

import dataclasses
import json
import re
import tomllib
from pathlib import Path

import pytest

from stream_detector.config import (
    ApiConfig,
    CameraConfig,
    InferenceConfig,
    LoggingConfig,
    MetricsConfig,
    MqttConfig,
    StorageConfig,
    load_daemon_config,
    parse_daemon_config,
)

DEPLOY = Path(__file__).resolve().parents[2] / "deploy"


def field_names(cls: type) -> set[str]:
    return {f.name for f in dataclasses.fields(cls)}


def test_example_config_loads(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FRONT_DOOR_PASSWORD", "s3cret")  # the example keeps it out of the file
    cfg = load_daemon_config(DEPLOY / "config.example.toml")
    assert list(cfg.cameras) == ["front_door"]
    assert cfg.cameras["front_door"].source == "rtsp://viewer:s3cret@192.0.2.10:554/stream1"
    assert cfg.mqtt is not None and cfg.mqtt.port == 1883
    assert cfg.metrics.port == 9108  # the port deploy/prometheus/prometheus.yml scrapes
    assert cfg.storage.path == "/var/lib/stream-detector"  # the unit's StateDirectory


def test_example_config_documents_every_key_with_a_valid_value() -> None:
    """Uncommenting every `#key = value` line must still load, and show each field of each table."""
    text = (DEPLOY / "config.example.toml").read_text()
    doc = tomllib.loads(re.sub(r"(?m)^#(?=\[|[a-z_]+ = )", "", text))
    cfg = parse_daemon_config(doc, "config.example.toml (uncommented)",
                              {"FRONT_DOOR_PASSWORD": "s3cret"})
    assert set(cfg.cameras) == {"front_door", "workshop"}
    assert set(doc["cameras"]["front_door"]) == field_names(CameraConfig)
    for table, cls in [("mqtt", MqttConfig), ("metrics", MetricsConfig), ("storage", StorageConfig),
                       ("logging", LoggingConfig), ("inference", InferenceConfig),
                       ("api", ApiConfig)]:
        assert set(doc[table]) == field_names(cls), table
    assert "device" in doc and "node_id" in doc
    assert cfg.cameras["front_door"].models[0].picture == "grey"
    assert cfg.detector.epochs == doc["detector"]["epochs"]  # [detector] for fit --camera


def unit_settings(path: Path) -> dict[str, list[str]]:
    settings: dict[str, list[str]] = {}
    for line in path.read_text().splitlines():
        if "=" in line and not line.startswith(("#", "[")):
            key, value = line.split("=", 1)
            settings.setdefault(key.strip(), []).append(value.strip())
    return settings


def test_systemd_unit_uses_notify_watchdog_and_hardening() -> None:
    s = unit_settings(DEPLOY / "stream-detector.service")
    expected = {
        "Type": "notify", "NotifyAccess": "main", "WatchdogSec": "30", "Restart": "on-failure",
        "RestartSec": "5", "User": "stream-detector", "Group": "stream-detector", "DynamicUser": "no",
        "StateDirectory": "stream-detector", "ExecReload": "/bin/kill -HUP $MAINPID",
        "ExecStart": "/opt/stream-detector/.venv/bin/stream-detector run --config "
                     "/etc/stream-detector/config.toml",
        "NoNewPrivileges": "yes", "ProtectSystem": "strict", "ProtectHome": "yes", "PrivateTmp": "yes",
        "ProtectKernelTunables": "yes", "ProtectControlGroups": "yes", "LockPersonality": "yes",
        "RestrictAddressFamilies": "AF_INET AF_INET6 AF_UNIX", "SupplementaryGroups": "video",
    }
    for key, value in expected.items():
        assert s.get(key) == [value], key


def test_dashboard_uses_the_provisioned_datasource_and_its_host_and_camera_variables() -> None:
    provisioned = (DEPLOY / "grafana/provisioning/datasources/prometheus.yml").read_text()
    uid = re.search(r"(?m)^\s*uid:\s*(\S+)", provisioned)
    assert uid is not None and uid.group(1) == "prometheus"
    dash = json.loads((DEPLOY / "grafana/dashboards/stream-detector.json").read_text())
    host, camera = dash["templating"]["list"]
    assert host["name"] == "host" and camera["name"] == "camera"
    assert host["query"]["query"] == "label_values(stream_detector_stream_up, instance)"
    assert camera["query"]["query"] == 'label_values(stream_detector_stream_up{instance=~"$host"}, camera)'
    assert host["datasource"]["uid"] == camera["datasource"]["uid"] == "prometheus"
    for panel in dash["panels"]:
        assert panel["datasource"]["uid"] == "prometheus", panel["title"]
        assert panel["targets"], panel["title"]
        for target in panel["targets"]:
            assert target["datasource"]["uid"] == "prometheus", panel["title"]
            # every series a panel reads is filtered by the host, and shown with it
            selectors = re.findall(r"\b(?:stream_detector|process)_[a-z_]+(\{[^}]*\})?", target["expr"])
            assert selectors and all('instance=~"$host"' in s for s in selectors), target["expr"]
            assert "{{instance}}" in target["legendFormat"], target["legendFormat"]
            if "camera" in target["legendFormat"]:
                assert 'camera=~"$camera"' in target["expr"], target["expr"]
    ids = [p["id"] for p in dash["panels"]]
    assert len(ids) == len(set(ids))


def test_compose_mounts_files_that_exist() -> None:
    compose = (DEPLOY / "docker-compose.yml").read_text()
    assert "dockerfile: deploy/Dockerfile" in compose and (DEPLOY / "Dockerfile").is_file()
    for source in re.findall(r"(?m)^\s*- (\./[\w./-]+):", compose):
        assert (DEPLOY / source).exists(), source
    dashboards = (DEPLOY / "grafana/provisioning/dashboards/dashboards.yml").read_text()
    path = re.search(r"(?m)^\s*path:\s*(\S+)", dashboards)
    assert path is not None and f"./grafana/dashboards:{path.group(1)}:ro" in compose
    assert "./prometheus:/etc/prometheus:ro" in compose
    dockerfile = (DEPLOY / "Dockerfile").read_text()
    assert 'ENTRYPOINT ["stream-detector", "run", "--config", "/config/config.toml"]' in dockerfile


def test_every_alert_names_the_host() -> None:
    """One set of rules for a fleet: a summary that does not say which host is no help."""
    summaries = re.findall(r"(?m)^\s*summary:\s*(.+)$", (DEPLOY / "prometheus/alerts.yml").read_text())
    assert len(summaries) >= 9
    assert all("{{ $labels.instance }}" in s for s in summaries), summaries
