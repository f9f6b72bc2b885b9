"""Every bad input a new operator might try is refused up front: one line on stderr that names the
file and the key, exit code 2, and nothing started (no file created, no broker connection).

The table is run in-process through `cli.main` (fast); config and model cases go through both
`check-config` and `run`, which must be equally strict. docs/reliability.md lists these cases with
their messages: `BAD_INPUTS_TABLE=rows.md pytest tests/unit/test_bad_inputs.py` writes its rows.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import socket
import subprocess
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pytest
from conftest import VTEST, build_detector, export_tiny, tiny_config

from stream_detector import cli
from stream_detector.config import DEFAULT_MODEL
from stream_detector.model.manifest import sign

BASE = {  # added to every config that does not set the table itself: nothing escapes TMP
    "storage": '[storage]\npath = "TMP/store"\n',
    "metrics": "[metrics]\nport = 0\n",
    "mqtt": '[mqtt]\nhost = "127.0.0.1"\nport = BROKER\n',  # a real listener: must see no connection
}
CAMERA = '[cameras.door]\nsource = "CLIP"\n'
API_OFF = "[api]\nenabled = false\n"  # a metrics host off the loopback would need a token'
MODEL_CAMERA = '[cameras.door]\nsource = "CLIP"\nmodel = "TMP/model"\n'
META = "TMP/model/metadata.json"
MODELS = '[[cameras.door.models]]\nname = "{name}"\nmodel = "{model}"\n{rule}'


@dataclass(frozen=True)
class Bad:
    """One bad input. Placeholders: CFG (the config file), TMP, CLIP (a readable 4:3 clip), MODEL
    (a copy of a tiny model, edited by `model`), BROKER and BUSY (ports), PKI (cert/key folder)."""

    id: str
    key: str  # regex for what the line must name after the file, e.g. r"cameras\.door\.source"
    config: str | bytes | None = None  # text of CFG; None: the case is about something else
    argv: tuple[str, ...] = ("check-config", "CFG")
    names: str = "CFG"  # the file the line must name ("" for command-line options)
    model: Callable[[Path], None] | None = None
    prepare: Callable[[Path], None] | None = None  # makes files the case needs under TMP
    run_too: bool = True  # also `run --config CFG`
    marks: tuple[Any, ...] = field(default=())


def edit(resign: bool = False, **changes: Any) -> Callable[[Path], None]:
    """Set metadata keys ("calibration__beta" for nested ones), optionally re-sealing the directory."""
    def apply(model_dir: Path) -> None:
        path = model_dir / "metadata.json"
        meta = json.loads(path.read_text())
        for dotted, value in changes.items():
            *parents, last = dotted.split("__")
            target = meta
            for p in parents:
                target = target[p]
            if value is DELETE:
                del target[last]
            else:
                target[last] = value
        path.write_text(json.dumps(meta))
        if resign:
            sign(model_dir)
    return apply


DELETE = object()


def write(name: str, data: bytes | str) -> Callable[[Path], None]:
    def apply(tmp: Path) -> None:
        path = tmp / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data.encode() if isinstance(data, str) else data)
    return apply


def in_model(name: str, data: bytes | None, resign: bool = False) -> Callable[[Path], None]:
    """Write (or with None delete) a file in the model directory."""
    def apply(model_dir: Path) -> None:
        if data is None:
            (model_dir / name).unlink()
        else:
            (model_dir / name).write_bytes(data)
        if resign:
            sign(model_dir)
    return apply


def empty_store(tmp: Path) -> None:
    """An event store with no verdict in it."""
    from stream_detector.outputs import EventStore

    (tmp / "store").mkdir()
    EventStore(tmp / "store" / "events.sqlite").close()


def truncate_model(model_dir: Path) -> None:
    path = model_dir / "model.pt"
    path.write_bytes(path.read_bytes()[:2000])


RANDOM = bytes(np.random.default_rng(9).integers(0, 256, 4096, dtype=np.uint8))
TLS = '[mqtt]\nhost = "127.0.0.1"\nport = BROKER\n'

CASES = [
    # --- the config file itself ---
    Bad("config file missing", r"config file not found", argv=("check-config", "TMP/none.toml"),
        names="TMP/none.toml"),
    Bad("config is a directory", r"cannot read config", argv=("check-config", "TMP"), names="TMP"),
    Bad("TOML syntax error", r"invalid TOML \(.*line 1", config="[cameras.door\nsource = 'x'\n"),
    Bad("TOML with a BOM", r"byte-order mark", config=b"\xef\xbb\xbf" + CAMERA.encode()),
    Bad("binary file", r"not a UTF-8 text file", config=RANDOM),
    Bad("Latin-1 text", r"not a UTF-8 text file", config="# caf\xe9\n".encode("latin-1") + CAMERA.encode()),
    Bad("NUL byte", r"NUL bytes", config=CAMERA.encode() + b"\x00"),
    Bad("duplicate table", r"invalid TOML", config=CAMERA + CAMERA),
    Bad("config over 1 MB", r"larger than 1 MB", config=CAMERA + "#" * (1 << 20) + "\n"),
    # --- structure and types ---
    Bad("unknown key", r"cameras\.door\.sourec: unknown key", config=CAMERA + 'sourec = "CLIP"\n'),
    Bad("unknown table", r"camera: unknown key", config='[camera.door]\nsource = "CLIP"\n'),
    Bad("value instead of a table", r"mqtt: expected a table",
        config='mqtt = "localhost"\n' + CAMERA),
    Bad("wrong type (string for number)", r"cameras\.door\.fps_limit: expected a number",
        config=CAMERA + 'fps_limit = "fast"\n'),
    Bad("wrong type (string for bool)", r"cameras\.door\.enabled: expected bool",
        config=CAMERA + 'enabled = "yes"\n'),
    Bad("device not a string", r"device: must be", config="device = 3\n" + CAMERA),
    Bad("unknown device", r"device: must be", config='device = "gpu"\n' + CAMERA),
    Bad("torch_threads < 0", r"inference\.torch_threads: must be in 0\.\.256",
        config="[inference]\ntorch_threads = -1\n" + CAMERA),
    Bad("unknown precision", r"inference\.precision: must be auto, fp16 or fp32",
        config='[inference]\nprecision = "fp8"\n' + CAMERA),
    Bad("linger_ms absurd", r"inference\.linger_ms: must be in 0\.\.1000",
        config="[inference]\nlinger_ms = 1e6\n" + CAMERA),
    Bad("unknown inference key", r"inference\.batch: unknown key",
        config="[inference]\nbatch = 8\n" + CAMERA),
    Bad("no cameras", r"cameras: configure at least one camera", config='[logging]\nlevel = "info"\n'),
    Bad("every camera disabled", r"cameras: every camera is disabled", config=CAMERA + "enabled = false\n"),
    Bad("camera name with a space", r"cameras\.front door: camera names",
        config='[cameras."front door"]\nsource = "CLIP"\n'),
    Bad("empty camera name", r"cameras\.: camera names", config='[cameras.""]\nsource = "CLIP"\n'),
    Bad("missing source", r"cameras\.door\.source: required", config="[cameras.door]\nloop = true\n"),
    Bad("empty source", r"cameras\.door\.source: must not be empty", config='[cameras.door]\nsource = ""\n'),
    Bad("newline in a value", r"cameras\.door\.source: must not contain control characters",
        config='[cameras.door]\nsource = "a\\nb"\n'),
    Bad("unknown logging level", r"logging\.level: must be", config=CAMERA + '[logging]\nlevel = "verbose"\n'),
    # --- numbers: finite, in range ---
    Bad("stale_after = inf", r"cameras\.door\.stale_after: expected a finite number", config=CAMERA + "stale_after = inf\n"),
    Bad("stale_after = nan", r"cameras\.door\.stale_after: expected a finite number", config=CAMERA + "stale_after = nan\n"),
    Bad("stale_after = 0", r"cameras\.door\.stale_after: must be in", config=CAMERA + "stale_after = 0\n"),
    Bad("min_duration = inf", r"cameras\.door\.min_duration: expected a finite", config=CAMERA + "min_duration = inf\n"),
    Bad("false_alarms_per_hour = inf", r"cameras\.door\.false_alarms_per_hour: expected a finite",
        config=CAMERA + "false_alarms_per_hour = inf\n"),
    Bad("false_alarms_per_hour = 0", r"cameras\.door\.false_alarms_per_hour: must be in",
        config=CAMERA + "false_alarms_per_hour = 0\n"),
    Bad("cooldown < 0", r"cameras\.door\.cooldown: must be in", config=CAMERA + "cooldown = -1\n"),
    Bad("update_interval = 0", r"cameras\.door\.update_interval: must be in", config=CAMERA + "update_interval = 0\n"),
    Bad("low_threshold_ratio > 1", r"cameras\.door\.low_threshold_ratio: must be in",
        config=CAMERA + "low_threshold_ratio = 1.5\n"),
    Bad("fps_limit < 0", r"cameras\.door\.fps_limit: must be in", config=CAMERA + "fps_limit = -1\n"),
    Bad("fps_limit absurd", r"cameras\.door\.fps_limit: must be in", config=CAMERA + "fps_limit = 1e9\n"),
    Bad("queue_size = 0", r"cameras\.door\.queue_size: must be in", config=CAMERA + "queue_size = 0\n"),
    Bad("queue_size of 20 digits", r"cameras\.door\.queue_size: must be in",
        config=CAMERA + "queue_size = 99999999999999999999\n"),
    Bad("width = height = 100000", r"cameras\.door\.width: must be 0 or in 32\.\.4096",
        config=CAMERA + "width = 100000\nheight = 100000\n"),
    Bad("width without height", r"cameras\.door\.width: set width and height together", config=CAMERA + "width = 640\n"),
    Bad("width = height = 16", r"cameras\.door\.width: must be 0 or in", config=CAMERA + "width = 16\nheight = 16\n"),
    Bad("resize to an aspect the model cannot score", r"cameras\.door\.width: .*does not fit model",
        config=CAMERA + "width = 640\nheight = 360\n"),
    Bad("ignore polygon of 2 points", r"cameras\.door\.ignore\[0\]: a polygon needs at least 3 points",
        config=CAMERA + "ignore = [[[0, 0], [10, 10]]]\n"),
    Bad("ignore point of 3 numbers", r"cameras\.door\.ignore\[0\]\[1\]: expected 2 values",
        config=CAMERA + "ignore = [[[0, 0], [10, 10, 3], [0, 10]]]\n"),
    Bad("ignore point nan", r"cameras\.door\.ignore\[0\]\[2\]\[0\]: expected a finite",
        config=CAMERA + "ignore = [[[0, 0], [10, 10], [nan, 10]]]\n"),
    Bad("keep_days = inf", r"storage\.keep_days: expected a finite",
        config=CAMERA + '[storage]\npath = "TMP/store"\nkeep_days = inf\n'),
    Bad("keep_days < 0", r"storage\.keep_days: must be in",
        config=CAMERA + '[storage]\npath = "TMP/store"\nkeep_days = -1\n'),
    # --- video sources ---
    Bad("source file missing", r"cameras\.door\.source: .*no such file",
        config='[cameras.door]\nsource = "TMP/missing.avi"\n'),
    Bad("source is /etc/passwd", r"cameras\.door\.source: /etc/passwd: not a readable video",
        config='[cameras.door]\nsource = "/etc/passwd"\n'),
    Bad("source is a directory", r"cameras\.door\.source: .* is not a regular file",
        config='[cameras.door]\nsource = "TMP"\n'),
    Bad("source of random bytes", r"cameras\.door\.source: .*not a readable video",
        config='[cameras.door]\nsource = "TMP/random.avi"\n', prepare=write("random.avi", RANDOM)),
    Bad("source an empty file", r"cameras\.door\.source: .*not a readable video",
        config='[cameras.door]\nsource = "TMP/empty.mp4"\n', prepare=write("empty.mp4", b"")),
    Bad("source URL without a host", r"cameras\.door\.source: the URL has no host",
        config='[cameras.door]\nsource = "rtsp:///stream1"\n'),
    Bad("source URL with a bad port", r"cameras\.door\.source: not a valid URL",
        config='[cameras.door]\nsource = "rtsp://cam:99x/stream1"\n'),
    Bad("detect_source file missing", r"cameras\.door\.detect_source: .*no such file",
        config=CAMERA + 'detect_source = "TMP/missing-substream.avi"\n'),
    Bad("detect_source equal to source", r"cameras\.door\.detect_source: must differ from source",
        config=CAMERA + 'detect_source = "CLIP"\n'),
    Bad("detect_source of random bytes", r"cameras\.door\.detect_source: .*not a readable video",
        config=CAMERA + 'detect_source = "TMP/random.avi"\n', prepare=write("random.avi", RANDOM)),
    Bad("capture unknown", r"cameras\.door\.capture: must be auto, opencv or ffmpeg",
        config=CAMERA + 'capture = "gstreamer"\n'),
    Bad("capture ffmpeg for a USB device", r"cameras\.door\.capture: ffmpeg reads files and network streams",
        config='[cameras.door]\nsource = "0"\ncapture = "ffmpeg"\n'),
    Bad("hwaccel with options in it", r"cameras\.door\.hwaccel: must be an ffmpeg -hwaccel name",
        config=CAMERA + 'capture = "ffmpeg"\nhwaccel = "cuda -y"\n'),
    Bad("hwaccel without ffmpeg capture", r'cameras\.door\.hwaccel: needs capture = "ffmpeg"',
        config=CAMERA + 'hwaccel = "cuda"\n'),
    Bad("hwaccel this ffmpeg does not know", r"cameras\.door\.hwaccel: 'nosuch' is not a method this ffmpeg knows",
        config=CAMERA + 'capture = "ffmpeg"\nhwaccel = "nosuch"\n'),
    # --- a camera's models and their rules, tamper ---
    Bad("models and model both", r"cameras\.door\.models: set model or models, not both",
        config=MODEL_CAMERA + MODELS.format(name="night", model="TMP/model", rule="")),
    Bad("model name with a space", r"cameras\.door\.models\[0\]\.name: model names use letters",
        config=CAMERA + MODELS.format(name="night vision", model="TMP/model", rule="")),
    Bad("two models of one name", r"cameras\.door\.models: model name 'night' is used twice",
        config=CAMERA + MODELS.format(name="night", model="TMP/model", rule="") * 2),
    Bad("model picture unknown", r"cameras\.door\.models\[0\]\.picture: must be grey, colour or empty",
        config=CAMERA + MODELS.format(name="night", model="TMP/model", rule='picture = "dark"\n')),
    Bad("model hours not HH:MM-HH:MM", r"cameras\.door\.models\[0\]\.hours: '7pm-7am': expected HH:MM",
        config=CAMERA + MODELS.format(name="night", model="TMP/model", rule='hours = "7pm-7am"\n')),
    Bad("model hours of no length", r"cameras\.door\.models\[0\]\.hours: .*start and end are the same",
        config=CAMERA + MODELS.format(name="night", model="TMP/model", rule='hours = "07:00-07:00"\n')),
    Bad("models entry without a model", r"cameras\.door\.models\[0\]\.model: required key missing",
        config=CAMERA + '[[cameras.door.models]]\nname = "night"\n'),
    Bad("models entry's directory missing", r"cameras\.door\.models\[1\]\.model: TMP/no-model: model directory not found",
        config=CAMERA + MODELS.format(name="day", model="TMP/model", rule="")
        + MODELS.format(name="night", model="TMP/no-model", rule="")),
    Bad("models that prepare frames differently", r"cameras\.door\.models\[1\]\.model: TMP/vtest has working_size",
        config=CAMERA + MODELS.format(name="day", model="TMP/model", rule="")
        + MODELS.format(name="night", model="TMP/vtest", rule='picture = "grey"\n'),
        prepare=lambda tmp: shutil.copytree(DEFAULT_MODEL, tmp / "vtest")),
    Bad("tamper_after = 0", r"cameras\.door\.tamper_after: must be in 1\.\.600",
        config=CAMERA + "tamper_after = 0\n"),
    Bad("tamper not a bool", r"cameras\.door\.tamper: expected bool", config=CAMERA + 'tamper = "off"\n'),
    Bad("detector table out of range", r"detector\.window: must be in 3\.\.32",
        config=CAMERA + "[detector]\nwindow = 1\n"),
    Bad("tune at not HH:MM", r"tune\.at: '3am': expected HH:MM", config=CAMERA + '[tune]\nat = "3am"\n'),
    Bad("tune interval under a second", r"tune\.interval: must be 0 \(daily at `at`\) or in 1\.\.",
        config=CAMERA + "[tune]\ninterval = 0.5\n"),
    Bad("tune keep = 0", r"tune\.keep: must be in 1\.\.100", config=CAMERA + "[tune]\nkeep = 0\n"),
    Bad("tune min_false_alarms = 0", r"tune\.min_false_alarms: must be in 1\.\.10000",
        config=CAMERA + "[tune]\nmin_false_alarms = 0\n"),
    Bad("tune enabled not a bool", r"tune\.enabled: expected bool", config=CAMERA + '[tune]\nenabled = "yes"\n'),
    Bad("unknown tune key", r"tune\.every: unknown key", config=CAMERA + '[tune]\nevery = "1d"\n'),
    Bad("camera tune not a bool", r"cameras\.door\.tune: expected bool", config=CAMERA + 'tune = "off"\n'),
    # --- storage ---
    Bad("storage is a file", r"storage\.path: .* is not a directory",
        config=CAMERA + '[storage]\npath = "TMP/afile"\n', prepare=write("afile", "x")),
    Bad("storage under a file", r"storage\.path: .*afile is a file",
        config=CAMERA + '[storage]\npath = "TMP/afile/store"\n', prepare=write("afile", "x")),
    Bad("storage's events.sqlite is a folder", r"storage\.path: .*events\.sqlite should be a file",
        config=CAMERA + '[storage]\npath = "TMP/st"\n', prepare=write("st/events.sqlite/x", "x")),
    # Read-only storage: root (as CI runs) writes to mode-555 folders, so that case is a real
    # read-only mount in tests/integration/test_bad_inputs_cli.py, which runs as root too.
    Bad("storage path empty", r"storage\.path: must not be empty", config=CAMERA + '[storage]\npath = ""\n'),
    # --- metrics ---
    Bad("metrics port in use", r"metrics\.port: \d+ is already in use",
        config=CAMERA + "[metrics]\nport = BUSY\n"),
    Bad("metrics host does not resolve", r"metrics\.host: 'no-such-host\.invalid' does not resolve",
        config=CAMERA + '[metrics]\nhost = "no-such-host.invalid"\nport = 0\n' + API_OFF),
    Bad("metrics host 256.1.1.1", r"metrics\.host: '256\.1\.1\.1' does not resolve",
        config=CAMERA + '[metrics]\nhost = "256.1.1.1"\nport = 0\n' + API_OFF),
    Bad("metrics host not on this machine", r"metrics\.host: 192\.0\.2\.1 is not an address of this machine",
        config=CAMERA + '[metrics]\nhost = "192.0.2.1"\nport = 0\n' + API_OFF),
    Bad("metrics port < 0", r"metrics\.port: must be in", config=CAMERA + "[metrics]\nport = -1\n"),
    Bad("metrics ready_after = 0", r"metrics\.ready_after: must be in", config=CAMERA + "[metrics]\nready_after = 0\n"),
    # --- MQTT ---
    Bad("broker host does not resolve", r"mqtt\.host: 'no-such-host\.invalid' does not resolve",
        config=CAMERA + '[mqtt]\nhost = "no-such-host.invalid"\n'),
    Bad("broker host empty", r"mqtt\.host: must not be empty", config=CAMERA + '[mqtt]\nhost = ""\n'),
    Bad("broker port 70000", r"mqtt\.port: must be in", config=CAMERA + "[mqtt]\nport = 70000\n"),
    Bad("qos 3", r"mqtt\.qos: must be 0, 1 or 2", config=CAMERA + TLS + "qos = 3\n"),
    Bad("keepalive 1", r"mqtt\.keepalive: must be in", config=CAMERA + TLS + "keepalive = 1\n"),
    Bad("topic prefix with a wildcard", r"mqtt\.topic_prefix: must not contain", config=CAMERA + TLS + 'topic_prefix = "a/#"\n'),
    Bad("topic prefix with an empty level", r"mqtt\.topic_prefix: must not start or end with '/'",
        config=CAMERA + TLS + 'topic_prefix = "site//cams"\n'),
    Bad("node_id with a slash", r"node_id: use 1-64 letters, digits", config='node_id = "site/a"\n' + CAMERA),
    Bad("node_id a number", r"node_id: use 1-64 letters, digits", config="node_id = 7\n" + CAMERA),
    Bad("score_interval = inf", r"mqtt\.score_interval: expected a finite", config=CAMERA + TLS + "score_interval = inf\n"),
    Bad("password without username", r"mqtt\.password: needs a username", config=CAMERA + TLS + 'password = "x"\n'),
    Bad("password from an unset variable", r"mqtt\.password: environment variable SD_UNSET_VAR is not set",
        config=CAMERA + TLS + 'username = "sd"\npassword = "${SD_UNSET_VAR}"\n'),
    Bad("a reference that is no variable name", r"cameras\.door\.source: \$\{1X\} is not a variable reference",
        config='[cameras.door]\nsource = "rtsp://viewer:${1X}@cam/live"\n'),
    Bad("password_file missing", r"mqtt\.password_file: TMP/none: cannot read \(No such file",
        config=CAMERA + TLS + 'username = "sd"\npassword_file = "TMP/none"\n'),
    Bad("password_file not UTF-8", r"mqtt\.password_file: TMP/pw: not UTF-8 text",
        config=CAMERA + TLS + 'username = "sd"\npassword_file = "TMP/pw"\n', prepare=write("pw", RANDOM)),
    Bad("password and password_file", r"mqtt\.password_file: set password or password_file, not both",
        config=CAMERA + TLS + 'username = "sd"\npassword = "x"\npassword_file = "TMP/pw"\n',
        prepare=write("pw", "y\n")),
    Bad("source_file a directory", r"cameras\.door\.source_file: TMP: cannot read \(Is a directory\)",
        config='[cameras.door]\nsource_file = "TMP"\n'),
    Bad("camera password with an unencoded '#'",
        r"cameras\.door\.source: the user name or password holds '/', '\?', '#' or '@' unencoded",
        config='[cameras.door]\nsource = "rtsp://viewer:Zq#9k@cam:554/live"\n'),
    Bad("camera password with an unencoded '/'",
        r"cameras\.door\.source: the user name or password holds",
        config='[cameras.door]\nsource = "rtsp://viewer:Zq/9k@cam:554/live"\n'),
    Bad("TLS CA file missing", r"mqtt\.tls_ca_file: .*no such file",
        config=CAMERA + TLS + 'tls_ca_file = "TMP/missing-ca.pem"\n'),
    Bad("TLS CA file is a directory", r"mqtt\.tls_ca_file: .* is not a regular file",
        config=CAMERA + TLS + 'tls_ca_file = "TMP"\n'),
    Bad("TLS CA file not a certificate", r"mqtt\.tls_ca_file: .* holds no usable CA certificate",
        config=CAMERA + TLS + 'tls_ca_file = "TMP/notes.txt"\n', prepare=write("notes.txt", "hello\n")),
    Bad("TLS client certificate missing", r"mqtt\.tls_cert_file: .*no such file",
        config=CAMERA + TLS + 'tls_ca_file = "PKI/ca.crt"\ntls_cert_file = "TMP/missing.crt"\n'
        'tls_key_file = "PKI/ca.key"\n'),
    Bad("TLS client key missing", r"mqtt\.tls_key_file: .*no such file",
        config=CAMERA + TLS + 'tls_ca_file = "PKI/ca.crt"\ntls_cert_file = "PKI/ca.crt"\n'
        'tls_key_file = "TMP/missing.key"\n'),
    Bad("TLS client certificate not a certificate", r"mqtt\.tls_cert_file: .* holds no PEM certificate",
        config=CAMERA + TLS + 'tls_ca_file = "PKI/ca.crt"\ntls_cert_file = "PKI/ca.key"\n'
        'tls_key_file = "PKI/ca.key"\n'),
    Bad("TLS key does not match the certificate", r"mqtt\.tls_key_file: .* not an unencrypted private key matching",
        config=CAMERA + TLS + 'tls_ca_file = "PKI/ca.crt"\ntls_cert_file = "PKI/ca.crt"\n'
        'tls_key_file = "PKI/other.key"\n'),
    Bad("TLS certificate without key", r"mqtt\.tls_cert_file: set tls_cert_file and tls_key_file together",
        config=CAMERA + TLS + 'tls_ca_file = "PKI/ca.crt"\ntls_cert_file = "PKI/ca.crt"\n'),
    Bad("TLS certificate without CA", r"mqtt\.tls_cert_file: needs tls_ca_file",
        config=CAMERA + TLS + 'tls_cert_file = "PKI/ca.crt"\ntls_key_file = "PKI/ca.key"\n'),
    Bad("tls_insecure without CA", r"mqtt\.tls_insecure: needs tls_ca_file", config=CAMERA + TLS + "tls_insecure = true\n"),
    # --- model directories (the camera's `model`) ---
    Bad("model directory missing", r"cameras\.door\.model: TMP/no-model: model directory not found",
        config='[cameras.door]\nsource = "CLIP"\nmodel = "TMP/no-model"\n'),
    Bad("no metadata.json", r"cameras\.door\.model: .*no metadata\.json", config=MODEL_CAMERA,
        model=in_model("metadata.json", None)),
    Bad("metadata.json not JSON", rf"{META}: unreadable metadata", config=MODEL_CAMERA,
        model=in_model("metadata.json", b"{not json")),
    Bad("metadata.json binary", rf"{META}: unreadable metadata", config=MODEL_CAMERA,
        model=in_model("metadata.json", RANDOM)),
    Bad("metadata.json an array", rf"{META}: not a stream-detector model", config=MODEL_CAMERA,
        model=in_model("metadata.json", b"[]")),
    Bad("format_version 99", rf"{META}: format_version 99 is not supported", config=MODEL_CAMERA,
        model=edit(format_version=99)),
    Bad("calibration = {}", rf"{META}: calibration: a: required key missing", config=MODEL_CAMERA,
        model=edit(calibration={})),
    Bad("calibration without fps", rf"{META}: calibration: fps: required key missing", config=MODEL_CAMERA,
        model=edit(calibration__fps=DELETE)),
    Bad("calibration.beta = NaN", rf"{META}: calibration: beta: must be a finite number", config=MODEL_CAMERA,
        model=edit(calibration__beta=float("nan"))),
    Bad("calibration.floor = 1e9", rf"{META}: calibration: floor: must be a finite number in",
        config=MODEL_CAMERA, model=edit(calibration__floor=1e9)),
    Bad("working_size = 'abc'", rf"{META}: working_size: must be two integers", config=MODEL_CAMERA,
        model=edit(working_size="abc")),
    Bad("working_size = [16, 16]", rf"{META}: working_size: must be two integers in 32", config=MODEL_CAMERA,
        model=edit(working_size=[16, 16])),
    Bad("window = 0", rf"{META}: window: must be an integer in 3\.\.32", config=MODEL_CAMERA, model=edit(window=0)),
    Bad("cell = 10", rf"{META}: cell: must be a multiple of 4", config=MODEL_CAMERA, model=edit(cell=10)),
    Bad("cell_stride = 0", rf"{META}: cell_stride: must be an integer in 1\.\.16", config=MODEL_CAMERA,
        model=edit(cell_stride=0)),
    Bad("grid = [0, 7]", rf"{META}: grid: must be two integers", config=MODEL_CAMERA, model=edit(grid=[0, 7])),
    Bad("pretext unknown", rf"{META}: pretext: must be one of", config=MODEL_CAMERA, model=edit(pretext="guess")),
    Bad("smoothing = -5", rf"{META}: smoothing: must be a finite number in \(0, 1\]", config=MODEL_CAMERA,
        model=edit(smoothing=-5)),
    Bad("region = 100000", rf"{META}: region: must be an integer in 1\.\.5", config=MODEL_CAMERA,
        model=edit(region=100000)),
    Bad("scene = 'yes'", rf"{META}: scene: must be true or false", config=MODEL_CAMERA, model=edit(scene="yes")),
    Bad("cue_weights of the old three cues", rf"{META}: cue_weights: must be 6 numbers", config=MODEL_CAMERA,
        model=edit(cue_weights=[0.0, 0.5, 1.0])),
    Bad("fps = 0", rf"{META}: fps: must be a finite number", config=MODEL_CAMERA, model=edit(fps=0)),
    Bad("color = 'yes'", rf"{META}: color: must be true or false", config=MODEL_CAMERA, model=edit(color="yes")),
    Bad("files = []", rf"{META}: files: must be a non-empty table", config=MODEL_CAMERA, model=edit(files=[])),
    Bad("files without model.pt", rf"{META}: files: must list model\.pt", config=MODEL_CAMERA,
        model=edit(files={"x": {"sha256": "0" * 64, "bytes": 1}})),
    Bad("files naming ../", rf"{META}: files: '\.\./x' is not a plain file name", config=MODEL_CAMERA,
        model=edit(files={"model.pt": {"sha256": "0" * 64, "bytes": 1}, "../x": {"sha256": "0" * 64, "bytes": 1}})),
    Bad("NaN in an informational key", rf"{META}: training\.final_loss: NaN and Infinity are not allowed",
        config=MODEL_CAMERA, model=edit(training={"final_loss": float("nan")})),
    Bad("signature missing", rf"{META}: signature: required key missing", config=MODEL_CAMERA,
        model=edit(signature=DELETE)),
    Bad("signature malformed", rf"{META}: signature: must be 'sha256:'", config=MODEL_CAMERA,
        model=edit(signature="abc")),
    Bad("threshold edited, not re-signed", rf"{META}: signature: does not match the metadata",
        config=MODEL_CAMERA, model=edit(calibration__floor=0.9)),
    Bad("threshold edited and re-signed", r"model\.pt: calibration\.floor: metadata\.json says 0\.9, the module holds 2",
        config=MODEL_CAMERA, model=edit(resign=True, calibration__floor=0.9)),
    Bad("region edited and re-signed", r"model\.pt: region: metadata\.json says 2, the module holds 3",
        config=MODEL_CAMERA, model=edit(resign=True, region=2)),
    Bad("scene edited and re-signed", r"model\.pt: scene: metadata\.json says False, the module takes scene",
        config=MODEL_CAMERA, model=edit(resign=True, scene=False)),
    Bad("a file not in the manifest", rf"{META}: files: notes\.txt is in the directory but not in the manifest",
        config=MODEL_CAMERA, model=in_model("notes.txt", b"hello")),
    Bad("model.pt truncated", r"model\.pt: checksum does not match", config=MODEL_CAMERA, model=truncate_model),
    Bad("model.pt missing", r"model\.pt is missing", config=MODEL_CAMERA, model=in_model("model.pt", None)),
    Bad("model.pt random bytes, re-signed", r"model\.pt: not a loadable TorchScript file", config=MODEL_CAMERA,
        model=in_model("model.pt", RANDOM, resign=True)),
    # --- event clips and the review API ---
    Bad("pre_capture = 120", r"cameras\.door\.pre_capture: must be in 0\.\.60",
        config=CAMERA + "pre_capture = 120\n"),
    Bad("post_capture = -1", r"cameras\.door\.post_capture: must be in 0\.\.60",
        config=CAMERA + "post_capture = -1\n"),
    Bad("clip = 'yes'", r"cameras\.door\.clip: expected bool", config=CAMERA + 'clip = "yes"\n'),
    Bad("api token too short", r"api\.token: must be 16\.\.256 printable characters",
        config=CAMERA + '[api]\ntoken = "secret"\n'),
    Bad("api token and token_file", r"api\.token_file: set token or token_file, not both",
        config=CAMERA + '[api]\ntoken = "0123456789abcdef"\ntoken_file = "TMP/t"\n'),
    Bad("api public_url not http", r"api\.public_url: must be an http:// or https:// URL",
        config=CAMERA + '[api]\npublic_url = "ftp://x"\n'),
    Bad("api open to the network without a token", r"api\.token: required when metrics\.host \(0\.0\.0\.0\)",
        config=CAMERA + '[metrics]\nhost = "0.0.0.0"\nport = 0\n'),
    Bad("api token_file missing", r"api\.token_file: TMP/none: cannot read \(No such file",
        config=CAMERA + '[api]\ntoken_file = "TMP/none"\n'),
    Bad("api token_file with two lines", r"api\.token: must not contain control characters",
        config=CAMERA + '[api]\ntoken_file = "TMP/token"\n',
        prepare=write("token", "0123456789abcdef\nZq9k second line\n")),
    Bad("unknown api key", r"api\.tokn: unknown key", config=CAMERA + '[api]\ntokn = "x"\n'),
    Bad("tune without a store", r"--store: no event store at TMP/none",
        argv=("tune", "--model", "TMP/model", "--store", "TMP/none", "--out", "TMP/new"), names=""),
    Bad("tune --out the model itself", r"--out: must be a new directory, not --model",
        argv=("tune", "--model", "TMP/model", "--store", "TMP", "--out", "TMP/model"), names=""),
    Bad("tune --out not empty", r"--out: TMP/model exists and is not empty",
        argv=("tune", "--model", "TMP/m2", "--store", "TMP", "--out", "TMP/model"), names=""),
    Bad("tune --event not an id", r"--event '\.\./x': an event id is 1-64 letters",
        argv=("tune", "--model", "TMP/model", "--store", "TMP", "--out", "TMP/new", "--event",
              "../x"), names=""),
    Bad("tune --camera with a space", r"--camera 'a b': camera names",
        argv=("tune", "--model", "TMP/model", "--store", "TMP", "--out", "TMP/new", "--camera",
              "a b"), names=""),
    Bad("tune --false-alarms-per-hour 0", r"argument --false-alarms-per-hour: 0 is not a finite number",
        argv=("tune", "--model", "TMP/model", "--store", "TMP", "--out", "TMP/new",
              "--false-alarms-per-hour", "0"), names=""),
    Bad("tune --widen sideways", r"argument --widen: invalid choice: 'sideways'",
        argv=("tune", "--model", "TMP/model", "--store", "TMP", "--out", "TMP/new", "--widen",
              "sideways"), names=""),
    Bad("tune with no false alarm to learn from", r"--store: TMP/store: no event marked false_alarm",
        argv=("tune", "--model", "TMP/model", "--store", "TMP/store", "--out", "TMP/new"), names="",
        prepare=empty_store),
    # --- command-line arguments and `events` options ---
    Bad("no command", r"the following arguments are required: command", argv=(), names=""),
    Bad("unknown command", r"argument command: invalid choice: 'start'", argv=("start",), names=""),
    Bad("check-config without a file", r"check-config: the following arguments are required: config",
        argv=("check-config",), names="", run_too=False),
    Bad("check-config --timeout 0", r"argument --timeout: 0 is not a finite number > 0",
        argv=("check-config", "--timeout", "0", "CFG"), names="", config=CAMERA, run_too=False),
    Bad("run --config missing", r"config file not found", argv=("run", "--config", "TMP/none.toml"),
        names="TMP/none.toml"),
    Bad("events --limit x", r"events: argument --limit: invalid integer value: 'x'",
        argv=("events", "--limit", "x"), names=""),
    Bad("events --limit 0", r"argument --limit: 0 is not in 1\.\.", argv=("events", "--limit", "0"), names=""),
    Bad("events --since yesterday", r"--since 'yesterday': expected epoch seconds",
        argv=("events", "--config", "CFG", "--since", "yesterday"), names="", config=CAMERA),
    Bad("events --camera with a space", r"--camera 'a b': camera names", config=CAMERA,
        argv=("events", "--config", "CFG", "--camera", "a b"), names=""),
    Bad("events without a store", r"storage\.path: no event store at TMP/store/events\.sqlite",
        argv=("events", "--config", "CFG"), config=CAMERA),
    Bad("events on a store that is not SQLite", r"storage\.path: .*events\.sqlite: cannot open the event store",
        argv=("events", "--config", "CFG"), config=CAMERA + '[storage]\npath = "TMP/st"\n',
        prepare=write("st/events.sqlite", RANDOM)),
    Bad("events --config missing", r"config file not found", argv=("events", "--config", "TMP/none.toml"),
        names="TMP/none.toml"),
    Bad("bench --frames 0", r"argument --frames: 0 is not in", argv=("bench", "--frames", "0"), names=""),
    Bad("bench --batch -1", r"argument --batch: -1 is not in", argv=("bench", "--batch", "-1"), names=""),
    Bad("eval --false-alarms-per-hour nan", r"argument --false-alarms-per-hour: nan is not a finite number",
        argv=("eval", "--data", "TMP", "--report", "TMP/r", "--false-alarms-per-hour", "nan"), names=""),
    Bad("fit --epochs -1", r"argument --epochs: -1 is not in", argv=("fit", "--source", "CLIP", "--out",
        "TMP/m", "--epochs", "-1"), names=""),
    # --- fit from a live camera, record ---
    Bad("fit without a source", r"fit: give --source", argv=("fit", "--out", "TMP/m"), names=""),
    Bad("fit a camera without --duration", r"fit: a live camera needs --duration",
        argv=("fit", "--source", "rtsp://127.0.0.1:CLOSED/stream", "--out", "TMP/m"), names=""),
    Bad("fit --duration for files", r"fit: --duration is for recording a live camera",
        argv=("fit", "--source", "CLIP", "--duration", "20m", "--out", "TMP/m"), names=""),
    Bad("fit --duration 20x", r"argument --duration: '20x' is not a duration like 90s",
        argv=("fit", "--source", "rtsp://127.0.0.1:CLOSED/stream", "--duration", "20x",
              "--out", "TMP/m"), names=""),
    Bad("fit --duration 40d", r"argument --duration: 40d is not between 1s and 30d",
        argv=("fit", "--source", "rtsp://127.0.0.1:CLOSED/stream", "--duration", "40d",
              "--out", "TMP/m"), names=""),
    Bad("fit --every without --take", r"--every and --take go together",
        argv=("fit", "--source", "rtsp://127.0.0.1:CLOSED/stream", "--duration", "1d", "--every",
              "1h", "--out", "TMP/m"), names=""),
    Bad("fit --take longer than --every", r"need take <= every <= duration",
        argv=("fit", "--source", "rtsp://127.0.0.1:CLOSED/stream", "--duration", "1d", "--every",
              "1h", "--take", "2h", "--out", "TMP/m"), names=""),
    Bad("fit --duration 3s", r"3s of footage is too little to fit a model",
        argv=("fit", "--source", "rtsp://127.0.0.1:CLOSED/stream", "--duration", "3s",
              "--out", "TMP/m"), names=""),
    Bad("fit a camera and files at once", r"fit: --source rtsp://127\.0\.0\.1:\d+/stream: record one camera at a time",
        argv=("fit", "--source", "rtsp://127.0.0.1:CLOSED/stream", "--source", "CLIP",
              "--duration", "20", "--out", "TMP/m"), names=""),
    Bad("fit from an unreachable camera", r"rtsp://127\.0\.0\.1:\d+/stream: cannot open .*Connection refused",
        argv=("fit", "--source", "rtsp://127.0.0.1:CLOSED/stream", "--duration", "20",
              "--out", "TMP/m"), names=""),
    Bad("fit --keep-footage a file", r"fit: --keep-footage: TMP/afile is a file",
        argv=("fit", "--source", "rtsp://127.0.0.1:CLOSED/stream", "--duration", "20",
              "--keep-footage", "TMP/afile", "--out", "TMP/m"), names="", prepare=write("afile", "x")),
    Bad("fit --camera without --config", r"fit: --camera needs --config FILE",
        argv=("fit", "--camera", "door", "--duration", "20", "--out", "TMP/m"), names=""),
    Bad("fit --camera not in the config", r"cameras\.yard: no such camera \(enabled: door\)",
        argv=("fit", "--config", "CFG", "--camera", "yard", "--duration", "20", "--out", "TMP/m"),
        config=CAMERA),
    Bad("fit --split without --camera", r"fit: --split needs --camera NAME and --config FILE",
        argv=("fit", "--source", "CLIP", "--split", "--out", "TMP/m"), names=""),
    Bad("fit --split a camera of one model", r"cameras\.door\.models: --split needs a camera with two or more",
        argv=("fit", "--config", "CFG", "--camera", "door", "--split", "--duration", "20",
              "--out", "TMP/m"), config=CAMERA),
    Bad("fit --split footage that no rule of a model selects",
        r"cameras\.door\.models\[0\] \(night\): no footage matches its rule \(picture grey\)",
        argv=("fit", "--config", "CFG", "--camera", "door", "--split", "--source", "CLIP",
              "--out", "TMP/m"),
        config=CAMERA + MODELS.format(name="night", model="TMP/model", rule='picture = "grey"\n')
        + MODELS.format(name="day", model="TMP/model", rule="")),
    Bad("record a file", r"record: --source must be a camera URL or USB device",
        argv=("record", "--source", "CLIP", "--duration", "20", "--out", "TMP/f"), names=""),
    Bad("record --out a file", r"record: --out: TMP/afile is a file",
        argv=("record", "--source", "rtsp://127.0.0.1:CLOSED/stream", "--duration", "20",
              "--out", "TMP/afile"), names="", prepare=write("afile", "x")),
    Bad("record without a source", r"record: give --source \(a camera URL\) or --camera NAME",
        argv=("record", "--duration", "20", "--out", "TMP/f"), names=""),
    Bad("record --source and --camera both", r"record: give --source or --camera, not both$",
        argv=("record", "--source", "rtsp://127.0.0.1:CLOSED/stream", "--config", "CFG", "--camera",
              "door", "--duration", "20", "--out", "TMP/f"), config=CAMERA, names=""),
    Bad("record --fps 0", r"record: argument --fps: 0 is not a finite number > 0",
        argv=("record", "--source", "rtsp://127.0.0.1:CLOSED/stream", "--duration", "20",
              "--fps", "0", "--out", "TMP/f"), names=""),
    Bad("fit --every 0", r"fit: argument --every: 0 is not between 1s and 30d",
        argv=("fit", "--source", "rtsp://127.0.0.1:CLOSED/stream", "--duration", "1d", "--every",
              "0", "--take", "1", "--out", "TMP/m"), names=""),
    Bad("score --device tpu", r"argument --device: invalid choice: 'tpu'",
        argv=("score", "--source", "CLIP", "--out", "TMP/s.csv", "--device", "tpu"), names=""),
    Bad("score with an edited model", rf"{META}: calibration: beta: must be a finite number",
        argv=("score", "--model", "TMP/model", "--source", "CLIP", "--out", "TMP/s.csv"), names=META,
        model=edit(calibration__beta=float("inf"))),
    Bad("sign a folder that is no model", r"TMP/metadata\.json: cannot sign", argv=("sign", "TMP"), names="TMP"),
    Bad("probe: clip of an aspect the model cannot score", r"cameras\.door\.source: probe failed: 320x180 frames",
        argv=("check-config", "--probe", "CFG"), config='[cameras.door]\nsource = "TMP/wide.avi"\n',
        prepare=lambda tmp: write_clip(tmp / "wide.avi", (320, 180)), run_too=False),
    Bad("probe: camera refuses the connection", r"cameras\.door\.source: probe failed: .*cannot open",
        argv=("check-config", "--probe", "--timeout", "15", "CFG"),
        config='[cameras.door]\nsource = "rtsp://127.0.0.1:CLOSED/stream"\n', run_too=False),
]


def write_clip(path: Path, size: tuple[int, int], frames: int = 8) -> Path:
    """A short MJPG clip of OpenCV's sample scene at `size` (width, height)."""
    cap = cv2.VideoCapture(str(VTEST))
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 10.0, size)
    for _ in range(frames):
        ok, frame = cap.read()
        assert ok
        writer.write(cv2.resize(frame, size, interpolation=cv2.INTER_AREA))
    writer.release()
    cap.release()
    return path


@pytest.fixture(scope="module")
def shared(tmp_path_factory: pytest.TempPathFactory, vtest: Path) -> dict[str, Path]:
    """Made once: a 4:3 clip the demo model fits, a tiny model to copy, a throwaway key pair."""
    root = tmp_path_factory.mktemp("bad-inputs")
    config = tiny_config()
    det, slicer = build_detector(config)
    model = export_tiny(det, config, slicer, root / "model")
    pki = root / "pki"
    pki.mkdir()
    for name in ("ca", "other"):
        subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
                        "-nodes", "-keyout", f"{name}.key", "-out", f"{name}.crt", "-days", "2",
                        "-subj", f"/CN={name}"], cwd=pki, check=True, capture_output=True)
    return {"clip": write_clip(root / "clip.avi", (192, 144)), "model": model, "pki": pki}


@pytest.fixture()
def ports() -> Iterator[dict[str, Any]]:
    """BROKER: a listening socket standing in for the broker (a connection to it would show);
    BUSY: a port already taken; CLOSED: a port where nothing listens."""
    broker = socket.create_server(("127.0.0.1", 0))
    busy = socket.create_server(("127.0.0.1", 0))
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        closed = probe.getsockname()[1]
    try:
        yield {"broker": broker, "BROKER": broker.getsockname()[1], "BUSY": busy.getsockname()[1],
               "CLOSED": closed}
    finally:
        broker.close()
        busy.close()


def prepare_case(case: Bad, tmp: Path, shared: dict[str, Path], ports: dict[str, Any]) -> dict[str, str]:
    """Write the case's files; returns the placeholder substitutions."""
    subst = {"CFG": str(tmp / "bad.toml"), "TMP": str(tmp), "CLIP": str(shared["clip"]),
             "PKI": str(shared["pki"]), "BROKER": str(ports["BROKER"]), "BUSY": str(ports["BUSY"]),
             "CLOSED": str(ports["CLOSED"])}
    shutil.copytree(shared["model"], tmp / "model")
    if case.model:
        case.model(tmp / "model")
    if case.prepare:
        case.prepare(tmp)
    if case.config is not None:
        raw = case.config if isinstance(case.config, bytes) else case.config.encode()
        if isinstance(case.config, str):
            raw += "".join(t for name, t in BASE.items() if name not in case.config).encode()
        for k, v in subst.items():
            raw = raw.replace(k.encode(), v.encode())
        (tmp / "bad.toml").write_bytes(raw)
    return subst


def call(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    """`stream-detector ARGV` in this process; an alarm turns a wrongly started daemon into a failure."""
    def fail(*_: object) -> None:
        raise RuntimeError(f"{argv} did not refuse within 60 s")

    old = signal.signal(signal.SIGALRM, fail)
    signal.alarm(60)
    try:
        rc = cli.main(argv)
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, old)
    out, err = capsys.readouterr()
    return rc, out, err


def files_under(path: Path) -> set[Path]:
    return set(path.rglob("*"))


@pytest.mark.parametrize("case", [pytest.param(c, id=c.id, marks=c.marks) for c in CASES])
def test_bad_input_is_one_line_naming_file_and_key_exit_2_nothing_started(
        case: Bad, tmp_path: Path, shared: dict[str, Path], ports: dict[str, Any],
        capsys: pytest.CaptureFixture[str]) -> None:
    subst = prepare_case(case, tmp_path, shared, ports)

    def sub(text: str) -> str:
        for k, v in subst.items():
            text = text.replace(k, v)
        return text

    commands = [[sub(a) for a in case.argv]]
    if case.run_too and case.argv[:1] == ("check-config",):
        commands.append(["run", "--config", commands[0][-1]])
    before = files_under(tmp_path)
    for argv in commands:
        rc, out, err = call(argv, capsys)
        lines = err.strip().splitlines()
        assert rc == 2 and len(lines) == 1, (argv, rc, err)
        line = lines[0]
        assert line.startswith("stream-detector: error: "), line
        if case.names:
            assert sub(case.names) in line, (line, sub(case.names))
        assert re.search(sub(case.key), line), (line, case.key)
        assert "Traceback" not in err and "\n" not in line
        assert "Zq" not in line and "9k" not in line  # no part of a password, ever
        assert files_under(tmp_path) == before, "a refused command created files"
        ports["broker"].settimeout(0.05)
        with pytest.raises(TimeoutError):  # nothing connected to the broker
            ports["broker"].accept()
        if os.environ.get("BAD_INPUTS_TABLE") and argv is commands[0]:  # docs: see the end
            for k in ("CFG", "TMP", "CLIP", "PKI", "BROKER", "BUSY", "CLOSED"):
                line = line.replace(subst[k], {"CFG": "FILE"}.get(k, k))
            line = line.replace(str(DEFAULT_MODEL), "models/vtest")  # no path of this checkout
            with open(os.environ["BAD_INPUTS_TABLE"], "a") as fh:
                fh.write(f"| {case.id} | {line.removeprefix('stream-detector: error: ')} |\n")


def test_the_table_is_large_and_documented() -> None:
    assert len(CASES) >= 60 and len({c.id for c in CASES}) == len(CASES)
    doc = (Path(__file__).resolve().parents[2] / "docs" / "reliability.md").read_text()
    missing = [c.id for c in CASES if f"| {c.id} |" not in doc]
    assert not missing, f"docs/reliability.md lacks: {missing}"


