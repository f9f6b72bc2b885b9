"""Daemon settings: the node id a host publishes under."""

from __future__ import annotations

import socket

import pytest

from stream_detector.config import host_node_id, parse_daemon_config

CAMERA = {"cameras": {"door": {"source": "rtsp://cam/stream"}}}


@pytest.mark.parametrize(("hostname", "node"), [
    ("cam-host-7", "cam-host-7"),
    ("gate.site.example", "gate"),          # the host part of a fully qualified name
    ("büro pc", "b_ro_pc"),                 # what topics and Home Assistant ids cannot hold
    ("", "localhost"),
])
def test_the_default_node_id_is_the_host_name(monkeypatch: pytest.MonkeyPatch, hostname: str,
                                              node: str) -> None:
    monkeypatch.setattr(socket, "gethostname", lambda: hostname)
    assert host_node_id() == node
    assert parse_daemon_config(CAMERA, "cfg").node == node


def test_node_id_in_the_config_wins(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(socket, "gethostname", lambda: "vm")
    cfg = parse_daemon_config({**CAMERA, "node_id": "gate-2"}, "cfg")
    assert (cfg.node_id, cfg.node) == ("gate-2", "gate-2")
