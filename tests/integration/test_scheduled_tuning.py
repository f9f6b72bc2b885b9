"""The daemon's scheduled tuning as a process: killed with -9 in the middle of a tune, it leaves a
child running and half a model on disk; at restart the child is stopped, the half model removed,
the tune done again and used, and check-config says which model the camera scores with."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import pytest
from conftest import injected_clip, stored_false_alarm
from daemon_helpers import DaemonProcess, cli, write_config
from rtsp_helpers import free_port

pytestmark = pytest.mark.integration


def alive(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().split()[2] != "Z"
    except OSError:
        return False


def test_kill_during_a_tune_leaves_nothing_half_done_and_the_restart_tunes_again(
        tmp_path: Path, vtest: Path) -> None:
    store = tmp_path / "store"
    store.mkdir()
    clip = injected_clip(vtest, tmp_path / "fa.avi", 60)
    stored_false_alarm(store / "events.sqlite", "fa1", "door", clip)
    # `chrt` (how the daemon starts its tune child) replaced: it writes half a model where the
    # tune writes, then hangs as a tune would, until it is killed (the shell stays, with the tune's
    # command line).
    shim = tmp_path / "bin"
    shim.mkdir()
    (shim / "chrt").write_text(
        '#!/bin/sh\nprev=""\nfor a; do [ "$prev" = --out ] && mkdir -p "$a" && '
        'echo half > "$a/model.pt"; prev="$a"; done\ntouch ' + str(tmp_path / "tuning") +
        "\nsleep 120\n")
    (shim / "chrt").chmod(0o755)
    port = free_port()
    config = write_config(tmp_path / "tune.toml", {
        "cameras": {"door": {"source": str(vtest), "loop": True}},
        "metrics": {"port": port}, "storage": {"path": str(store), "snapshots": False},
        "tune": {"enabled": True, "interval": 1}})
    root = store / "models" / "door" / "default"
    daemon = DaemonProcess(config, port, tmp_path, env={"PATH": f"{shim}:{os.environ['PATH']}"})
    try:
        daemon.wait_up()
        deadline = time.monotonic() + 60
        while not (tmp_path / "tuning").exists():
            daemon.assert_running()
            assert time.monotonic() < deadline, daemon.log()[-3000:]
            time.sleep(0.05)
        child = int((store / "models" / "tuning.pid").read_text())
        assert alive(child) and list(root.glob(".partial-*/model.pt"))  # caught mid-tune
        daemon.proc.kill()
        daemon.proc.wait(10)
    finally:
        daemon.close()
    assert alive(child)  # in its own session, it outlived the daemon
    assert not (root / "current.json").exists()
    restarted = DaemonProcess(config, port, tmp_path, name="restarted")
    try:
        restarted.wait_up()
        restarted.wait_metric("stream_detector_tunes_total", lambda v: v == 1, 120,
                              camera="door", result="ok")
        assert not alive(child)  # stopped at start, before the tune began again
        assert restarted.log_lines("stopping the tune the previous run left running")
        assert not list(root.glob(".partial-*"))
        pointer = json.loads((root / "current.json").read_text())
        assert pointer["events"] == ["fa1"]
        versions = [p for p in root.iterdir() if p.is_dir()]
        assert versions == [Path(pointer["model"])]
        assert restarted.wait_log("camera door: model default: tuned in", "scoring with")
        assert restarted.value("stream_detector_tunes_total", camera="door", result="failed") \
            in (None, 0.0)
    finally:
        restarted.stop(20)
        restarted.close()
    out = cli("check-config", str(config))
    assert out.returncode == 0, out.stderr
    assert "camera door: model default: tuned " in out.stdout and pointer["model"] in out.stdout
