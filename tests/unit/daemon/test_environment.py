"""What a config needs from this machine: a reload keeps its own metrics port, storage that can be
created is fine (and is not created by the check).
"""

from __future__ import annotations

import socket
from pathlib import Path

import pytest
from conftest import write_cfg

from stream_detector.config import StorageConfig, load_daemon_config
from stream_detector.daemon import load_config
from stream_detector.errors import ConfigError


def test_a_reload_may_keep_its_own_metrics_port_but_not_take_a_busy_one(tmp_path: Path) -> None:
    with socket.create_server(("127.0.0.1", 0)) as ours:  # the running daemon's metrics server
        port = ours.getsockname()[1]
        running = load_daemon_config(write_cfg(tmp_path, port=port))
        with pytest.raises(ConfigError, match=rf"metrics\.port: {port} is already in use"):
            load_config(tmp_path / "c.toml")  # a fresh start could not listen there
        assert load_config(tmp_path / "c.toml", running=running).metrics.port == port
        write_cfg(tmp_path, '[mqtt]\ntls_ca_file = "/nonexistent/ca.pem"\n', port=port)
        with pytest.raises(ConfigError, match=r"mqtt\.tls_ca_file: /nonexistent/ca\.pem: no such file"):
            load_config(tmp_path / "c.toml", running=running)  # the rest is checked as at start


def test_storage_that_does_not_exist_yet_is_fine_if_it_can_be_created(tmp_path: Path) -> None:
    from stream_detector.daemon.environment import check_storage

    check_storage(StorageConfig(path=str(tmp_path / "a" / "b")), "c.toml")
    assert list(tmp_path.iterdir()) == []  # looked, did not create


def test_a_file_every_user_can_read_that_holds_a_secret_is_warned_about(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    from stream_detector import cli
    from stream_detector.daemon import secret_warnings

    cfg_path = write_cfg(tmp_path, '[mqtt]\nusername = "sd"\npassword = "in-the-clear"\n')
    cfg_path.chmod(0o644)
    (warning,) = secret_warnings(load_daemon_config(cfg_path))
    assert warning.startswith(f"{cfg_path} is readable by every user and holds the secret of "
                              "mqtt.password: chmod o-r")
    assert "in-the-clear" not in warning
    cfg_path.chmod(0o640)
    assert secret_warnings(load_daemon_config(cfg_path)) == []

    secret = tmp_path / "mqtt-password"
    secret.write_text("from-a-file\n")
    secret.chmod(0o644)
    monkeypatch.setenv("SD_PW", "from-the-env")
    write_cfg(tmp_path, f'[mqtt]\nusername = "sd"\npassword_file = "{secret}"\n').chmod(0o644)
    (warning,) = secret_warnings(load_daemon_config(cfg_path))
    assert warning.startswith(f"{secret} is readable by every user and holds the secret of mqtt")
    write_cfg(tmp_path, '[mqtt]\nusername = "sd"\npassword = "${SD_PW}"\n').chmod(0o644)
    assert secret_warnings(load_daemon_config(cfg_path)) == []  # the environment is the user's

    write_cfg(tmp_path, '[mqtt]\nusername = "sd"\npassword = "in-the-clear"\n').chmod(0o644)
    assert cli.main(["check-config", str(cfg_path)]) == 0
    err = capsys.readouterr().err
    assert err.startswith(f"stream-detector: warning: {cfg_path} is readable by every user")
    assert "in-the-clear" not in err
