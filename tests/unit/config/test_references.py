"""Values by reference: ${NAME} from the environment, KEY_file from a file; errors name the key
and the reference, never the value."""

from __future__ import annotations

from pathlib import Path

import pytest

from stream_detector.config import Expanded, parse_daemon_config
from stream_detector.errors import ConfigError

ENV = {"MQTT_PASS": "s3cr3t-#?/pw", "CAM_PASS": "c%40m-pw", "HOST": "broker.lan"}


def config(mqtt: dict[str, object], source: str = "rtsp://viewer:${CAM_PASS}@cam/live",
           env: dict[str, str] = ENV) -> object:
    doc = {"cameras": {"door": {"source": source}}, "mqtt": {"username": "sd", **mqtt}}
    return parse_daemon_config(doc, "cfg.toml", env)


def error(*args: object, **kw: object) -> str:
    with pytest.raises(ConfigError) as err:
        config(*args, **kw)  # type: ignore[arg-type]
    return str(err.value)


def test_references_are_expanded_and_their_repr_is_the_reference() -> None:
    cfg = config({"password": "${MQTT_PASS}", "host": "${HOST}", "topic_prefix": "cost$$/x"})
    assert cfg.mqtt.password == "s3cr3t-#?/pw" and cfg.mqtt.host == "broker.lan"  # type: ignore[attr-defined]
    assert cfg.mqtt.topic_prefix == "cost$/x"  # type: ignore[attr-defined]
    assert repr(cfg.mqtt.password) == "'${MQTT_PASS}'"  # type: ignore[attr-defined]
    assert "s3cr3t" not in repr(cfg) and "c%40m-pw" not in repr(cfg)
    source = cfg.cameras["door"].source  # type: ignore[attr-defined]
    assert source == "rtsp://viewer:c%40m-pw@cam/live" and isinstance(source, Expanded)
    assert [(k, s) for k, _, s in cfg.secrets()] == [  # type: ignore[attr-defined]
        ("mqtt.password", "s3cr3t-#?/pw"), ("cameras.door.source", "c%40m-pw")]


def test_unset_variables_and_bad_references_name_the_key_and_the_variable() -> None:
    assert error({"password": "${NOPE}"}) == (
        "cfg.toml: mqtt.password: environment variable NOPE is not set")
    assert error({}, source="rtsp://u:${1X}@cam") .startswith(
        "cfg.toml: cameras.door.source: ${1X} is not a variable reference")
    message = error({"port": "${MQTT_PASS}"})  # a string where a number belongs
    assert message == "cfg.toml: mqtt.port: expected int, got '${MQTT_PASS}'"


def test_key_file_reads_the_value_from_a_file(tmp_path: Path) -> None:
    (tmp_path / "pw").write_text("from-a-file\n")
    (tmp_path / "url").write_text("rtsp://viewer:f1le-pw@cam/live")
    (tmp_path / "token").write_text("api-token-0123456789\n")
    doc = {"cameras": {"door": {"source_file": str(tmp_path / "url")}},
           "mqtt": {"username": "sd", "password_file": "${DIR}/pw"},
           "metrics": {"host": "0.0.0.0"}, "api": {"token_file": "${DIR}/token"}}
    cfg = parse_daemon_config(doc, "cfg.toml", {"DIR": str(tmp_path)})
    assert cfg.mqtt is not None and cfg.mqtt.password == "from-a-file"
    assert repr(cfg.mqtt.password) == f"<contents of {tmp_path / 'pw'}>"
    assert cfg.cameras["door"].source == "rtsp://viewer:f1le-pw@cam/live"
    assert cfg.api.token == "api-token-0123456789"  # the review API's token: a secret too
    assert ("api.token", "api-token-0123456789") in [(k, s) for k, _, s in cfg.secrets()]


@pytest.mark.parametrize(("mqtt", "message"), [
    ({"password": "x", "password_file": "PW"}, "mqtt.password_file: set password or password_file, not both"),
    ({"password_file": "TMP/missing"}, "mqtt.password_file: TMP/missing: cannot read (No such file"),
    ({"password_file": "TMP"}, "mqtt.password_file: TMP: cannot read (Is a directory)"),
    ({"password_file": "BIG"}, "mqtt.password_file: BIG: over 64 KiB: not a value file"),
    ({"password_file": "BIN"}, "mqtt.password_file: BIN: not UTF-8 text"),
    ({"password_file": ""}, "mqtt.password_file: must not be empty"),
    ({"nosuch_file": "PW"}, "mqtt.nosuch_file: unknown key"),
])
def test_bad_value_files_are_one_line_naming_the_key(tmp_path: Path, mqtt: dict[str, str],
                                                     message: str) -> None:
    files = {"PW": tmp_path / "pw", "BIG": tmp_path / "big", "BIN": tmp_path / "bin"}
    files["PW"].write_text("pw\n")
    files["BIG"].write_bytes(b"x" * 70_000)
    files["BIN"].write_bytes(b"\xff\xfe")
    subst = {k: str(v) for k, v in files.items()} | {"TMP": str(tmp_path)}

    def sub(text: str) -> str:
        for k in ("TMP", "PW", "BIG", "BIN"):
            text = text.replace(k, subst[k]) if not text.startswith("mqtt.") else text
        return text

    got = error({k: sub(v) for k, v in mqtt.items()})
    want = message
    for k in ("TMP", "BIG", "BIN"):
        want = want.replace(f" {k}", f" {subst[k]}")
    assert got.startswith(f"cfg.toml: {want}") and "\n" not in got


@pytest.mark.parametrize("separator", ["#", "/", "?", "@"])
def test_a_url_password_with_an_unencoded_separator_is_refused_without_showing_it(
        separator: str) -> None:
    message = error({}, source=f"rtsp://viewer:Zq{separator}9k@cam:554/live")
    assert message.startswith("cfg.toml: cameras.door.source: the user name or password holds")
    assert not any(part in message for part in ("Zq", "9k", "viewer", "cam:554"))
