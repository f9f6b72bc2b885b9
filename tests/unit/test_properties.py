"""Property tests: whatever text, TOML or JSON an operator feeds in, the answer is a value or one
line (ConfigError / ModelError), never a traceback."""

from __future__ import annotations

import dataclasses
import json
import math
import tempfile
from pathlib import Path
from typing import Any

from conftest import build_detector, tiny_config, tiny_metadata
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from stream_detector.config import (
    CameraConfig,
    DaemonConfig,
    LoggingConfig,
    MetricsConfig,
    MqttConfig,
    StorageConfig,
    load_daemon_config,
    parse_daemon_config,
)
from stream_detector.daemon import check_environment
from stream_detector.errors import ConfigError, ModelError
from stream_detector.model.manifest import REQUIRED, validate_metadata
from stream_detector.model.runtime import read_metadata

FAST = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])

# Scalars TOML can hold, with the edges that broke things: nan, inf, huge integers, odd characters.
scalars = st.one_of(
    st.booleans(), st.integers(), st.integers(min_value=-(10**30), max_value=10**30),
    st.floats(allow_nan=True, allow_infinity=True), st.text(max_size=20),
    st.sampled_from(["", "demo", "0", "rtsp://", "rtsp://[::1", "/etc/passwd", "127.0.0.1",
                     "no-such-host.invalid", "a\nb", "\x00"]),
)
values = st.recursive(scalars, lambda inner: st.lists(inner, max_size=4)
                      | st.dictionaries(st.text(max_size=8), inner, max_size=4), max_leaves=12)


def table(cls: type) -> st.SearchStrategy[dict[str, Any]]:
    """Tables that mostly use the dataclass's own keys (so range checks are reached) with any value."""
    names = [f.name for f in dataclasses.fields(cls)]
    return st.dictionaries(st.sampled_from(names) | st.text(max_size=6), values, max_size=6)


def near_valid(cls: type, required: dict[str, Any]) -> st.SearchStrategy[dict[str, Any]]:
    """Tables with the required keys, some others at their defaults, and at most one value of any
    kind: each reaches the range check of the key it varies, and some pass."""
    fields = [f for f in dataclasses.fields(cls) if f.name not in required]
    base = st.fixed_dictionaries(required, optional={
        f.name: st.just(f.default) for f in fields if isinstance(f.default, (bool, int, float, str))})
    return st.tuples(base, st.none() | st.tuples(st.sampled_from([f.name for f in fields]), scalars)).map(
        lambda t: {**t[0], **({t[1][0]: t[1][1]} if t[1] else {})})


cameras = near_valid(CameraConfig, {"source": st.sampled_from(["demo", "0", "rtsp://cam/s",
                                                               "/etc/passwd", "rtsp://[::1"])})
documents = st.fixed_dictionaries({
    "cameras": st.dictionaries(st.sampled_from(["door", "a-b", "cam_1"]) | st.sampled_from(["", "x y"])
                               | st.text(max_size=5), cameras, min_size=1, max_size=3)
    | st.dictionaries(st.text(max_size=5), table(CameraConfig) | values, max_size=3),
}, optional={
    "mqtt": near_valid(MqttConfig, {}) | table(MqttConfig) | values,
    "metrics": near_valid(MetricsConfig, {}) | table(MetricsConfig) | values,
    "storage": near_valid(StorageConfig, {}) | table(StorageConfig) | values,
    "device": st.sampled_from(["auto", "cpu"]) | values,
    "logging": near_valid(LoggingConfig, {}) | values,
}) | st.dictionaries(st.text(max_size=8), values, max_size=4)


def one_line(exc: Exception, prefix: str) -> None:
    text = str(exc)
    assert "\n" not in text and text.startswith(prefix), text


@FAST
@given(text=st.text(max_size=300))
def test_any_text_is_a_config_or_one_line(text: str) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "c.toml"
        path.write_text(text, encoding="utf-8", errors="surrogatepass")
        try:
            load_daemon_config(path)
        except ConfigError as exc:
            one_line(exc, f"{path}: ")


@FAST
@given(data=st.binary(max_size=300))
def test_any_bytes_are_a_config_or_one_line(data: bytes) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "c.toml"
        path.write_bytes(data)
        try:
            load_daemon_config(path)
        except ConfigError as exc:
            one_line(exc, f"{path}: ")


@FAST
@given(doc=documents)
def test_any_toml_document_is_a_config_or_one_line(doc: dict[str, Any]) -> None:
    """Parsed documents of any shape, then the machine checks run, start and reload share."""
    try:
        cfg = parse_daemon_config(doc, "c.toml")
    except ConfigError as exc:
        one_line(exc, "c.toml: ")
        return
    assert isinstance(cfg, DaemonConfig)
    for cam in cfg.cameras.values():  # what passed is finite and in range
        assert all(math.isfinite(getattr(cam, f)) for f in ("stale_after", "min_duration", "cooldown",
                                                             "false_alarms_per_hour"))
        assert cam.width <= 4096 and cam.height <= 4096
    with tempfile.TemporaryDirectory() as tmp:
        cfg = dataclasses.replace(cfg, storage=dataclasses.replace(cfg.storage, path=tmp))
        try:
            check_environment(cfg)
        except ConfigError as exc:
            one_line(exc, "c.toml: ")


# --- model metadata -----------------------------------------------------------------------------

def valid_metadata() -> dict[str, Any]:
    cfg = tiny_config()
    _, slicer = build_detector(cfg)
    meta = {**tiny_metadata(cfg, slicer), "files": {"model.pt": {"sha256": "0" * 64, "bytes": 1}},
            "signature": "sha256:" + "0" * 64}
    return json.loads(json.dumps(meta))


VALID = valid_metadata()
json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=10),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=6), inner, max_size=4),
    max_leaves=12)


def test_the_valid_metadata_passes() -> None:
    assert validate_metadata(dict(VALID), "m.json") == VALID


@FAST
@given(meta=json_values)
def test_any_json_is_refused_in_one_line(meta: Any) -> None:
    try:
        validate_metadata(meta, "m.json")
    except ModelError as exc:
        one_line(exc, "m.json: ")


@FAST
@given(changes=st.dictionaries(st.sampled_from([*REQUIRED, "region", "color", "extra"]), json_values,
                               min_size=1, max_size=3))
def test_valid_metadata_with_keys_replaced_is_checked_or_refused_in_one_line(
        changes: dict[str, Any]) -> None:
    meta = {**VALID, **changes}
    try:
        validate_metadata(meta, "m.json")
    except ModelError as exc:
        one_line(exc, "m.json: ")
        return
    # Accepted: then every value the daemon computes with is sane.
    cal = meta["calibration"]
    assert all(math.isfinite(cal[k]) for k in ("a", "beta", "floor", "fps")) and cal["beta"] > 0
    assert 0 < meta["smoothing"] <= 1 and 3 <= meta["window"] <= 32
    assert 1 <= meta.get("region", 1) <= min(meta["grid"])


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.binary(max_size=200) | st.builds(lambda v: json.dumps(v).encode(), json_values))
def test_any_metadata_file_is_refused_in_one_line(data: bytes) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        (Path(tmp) / "metadata.json").write_bytes(data)
        try:
            read_metadata(Path(tmp))
        except ModelError as exc:
            one_line(exc, f"{tmp}")
