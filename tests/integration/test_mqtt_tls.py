"""The MQTT sink over TLS against a real mosquitto: a throwaway CA made with the openssl CLI,
username/password from a mosquitto password file, a listener that requires client certificates,
and the server hostname check (`tls_insecure`).

openssl and mosquitto are part of the dev setup: when one is missing these tests fail, they do
not skip.
"""

from __future__ import annotations

import json
import logging
import os
import pwd
import shutil
import subprocess
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
import pytest
from mqtt_broker import Broker, free_port, subscribed, wait_port

from stream_detector.config import MqttConfig
from stream_detector.outputs import MqttSink

pytestmark = pytest.mark.integration

PREFIX = "sd-tls"
USER, PASSWORD = "sd-user", "s3cret-pass"
LOGGER = "stream_detector.sinks.mqtt"
EVENT = {"id": "ev-tls", "type": "new", "camera": "door"}
SBIN = "/usr/sbin:/usr/local/sbin"


def _tool(name: str) -> str:
    path = shutil.which(name) or shutil.which(name, path=SBIN)
    assert path, f"{name} not found: install the openssl and mosquitto packages (./dev setup does)"
    return path


def _run(*args: str, cwd: Path) -> None:
    done = subprocess.run(args, cwd=cwd, capture_output=True, text=True, timeout=30)
    assert done.returncode == 0, f"{' '.join(args)} failed:\n{done.stdout}{done.stderr}"


# --- a throwaway PKI --------------------------------------------------------------------------


@dataclass(frozen=True)
class Pki:
    dir: Path
    ca: Path

    def cert(self, name: str) -> Path:
        return self.dir / f"{name}.crt"

    def key(self, name: str) -> Path:
        return self.dir / f"{name}.key"


EC_KEY = ("-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes")  # fast to make


def make_pki(d: Path) -> Pki:
    """A CA and three leaf certificates it signs: `server` for the IP 127.0.0.1, `localhost` for
    the DNS name localhost only, and `client` (clientAuth) for the listener that demands one."""
    openssl = _tool("openssl")
    _run(openssl, "req", "-x509", *EC_KEY, "-keyout", "ca.key", "-out", "ca.crt", "-days", "2",
         "-subj", "/CN=stream-detector test CA",
         "-addext", "basicConstraints=critical,CA:TRUE",
         "-addext", "keyUsage=critical,keyCertSign,cRLSign",
         "-addext", "subjectKeyIdentifier=hash", cwd=d)
    leaves = {"server": ("127.0.0.1", "serverAuth", "subjectAltName=IP:127.0.0.1\n"),
              "localhost": ("localhost", "serverAuth", "subjectAltName=DNS:localhost\n"),
              "client": ("sd-client", "clientAuth", "")}
    for serial, (name, (cn, usage, san)) in enumerate(leaves.items(), start=2):
        (d / f"{name}.ext").write_text(
            "basicConstraints=critical,CA:FALSE\nkeyUsage=critical,digitalSignature\n"
            f"extendedKeyUsage={usage}\nsubjectKeyIdentifier=hash\n"
            f"authorityKeyIdentifier=keyid\n{san}")
        _run(openssl, "req", "-new", *EC_KEY, "-keyout", f"{name}.key", "-out", f"{name}.csr",
             "-subj", f"/CN={cn}", cwd=d)
        _run(openssl, "x509", "-req", "-in", f"{name}.csr", "-CA", "ca.crt", "-CAkey", "ca.key",
             "-set_serial", str(serial), "-days", "2", "-extfile", f"{name}.ext",
             "-out", f"{name}.crt", cwd=d)
    return Pki(d, d / "ca.crt")


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    return make_pki(tmp_path_factory.mktemp("pki"))


# --- a TLS broker -----------------------------------------------------------------------------


class TlsBroker(Broker):
    """mosquitto with three TLS listeners sharing one password file (no anonymous clients):

    - `port`: the `server` certificate (127.0.0.1), no client certificate needed;
    - `cert_port`: the same, but a client certificate signed by the CA is required;
    - `localhost_port`: the `localhost` certificate, whose name does not match 127.0.0.1.
    """

    def __init__(self, workdir: Path, pki: Pki) -> None:
        super().__init__(workdir)
        ports = {self.port}
        while len(ports) < 3:
            ports.add(free_port())
        self.cert_port, self.localhost_port = sorted(ports - {self.port})
        passwd = workdir / "passwd"
        _run(_tool("mosquitto_passwd"), "-b", "-c", str(passwd), USER, PASSWORD, cwd=workdir)
        self.log = workdir / "mosquitto.log"

        def listener(port: int, cert: str, extra: str = "") -> str:
            return (f"listener {port} 127.0.0.1\ncafile {pki.ca}\ncertfile {pki.cert(cert)}\n"
                    f"keyfile {pki.key(cert)}\n{extra}")

        # Started as root, mosquitto switches to `user` before it reads the password file; naming
        # the user running the tests keeps the files in pytest's private tmp dir readable.
        # (Not root: the setting has no effect.)
        self.conf.write_text(
            f"user {pwd.getpwuid(os.getuid()).pw_name}\nallow_anonymous false\n"
            f"password_file {passwd}\n"
            + listener(self.port, "server")
            + listener(self.cert_port, "server", "require_certificate true\n")
            + listener(self.localhost_port, "localhost"))

    def start(self) -> None:
        super().start()
        wait_port(self.cert_port)
        wait_port(self.localhost_port)

    def log_count(self, text: str) -> int:
        return self.log.read_text(errors="replace").count(text)


@pytest.fixture()
def broker(tmp_path: Path, pki: Pki) -> Iterator[TlsBroker]:
    b = TlsBroker(tmp_path, pki)
    try:
        b.start()
        yield b
    finally:
        if b.proc is not None and b.proc.poll() is None:
            b.proc.kill()
            b.proc.wait(10)


# --- helpers ----------------------------------------------------------------------------------


def sink_config(pki: Pki, port: int, name: str, **kw: Any) -> MqttConfig:
    base: dict[str, Any] = dict(host="127.0.0.1", port=port, topic_prefix=PREFIX,
                                client_id=f"sd-tls-{name}", tls_ca_file=str(pki.ca),
                                username=USER, password=PASSWORD)
    return MqttConfig(**{**base, **kw})


@contextmanager
def started(config: MqttConfig, **kw: Any) -> Iterator[MqttSink]:
    """A started sink, stopped however the test ends (stop() must not hang either way)."""
    sink = MqttSink(config, ["door"], **kw)
    sink.start()
    try:
        yield sink
    finally:
        t0 = time.monotonic()
        sink.stop()
        assert time.monotonic() - t0 < 3, "stop() took too long"


def client_tls(pki: Pki) -> Callable[[mqtt.Client], None]:
    def setup(client: mqtt.Client) -> None:
        client.tls_set(ca_certs=str(pki.ca))
        client.username_pw_set(USER, PASSWORD)
    return setup


def wait_until(ok: Callable[[], bool], timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not ok():
        assert time.monotonic() < deadline, "condition not reached in time"
        time.sleep(0.02)


def sink_warnings(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records
            if r.name == LOGGER and r.levelno >= logging.WARNING]


def assert_fails_fast(sink: MqttSink) -> None:
    t0 = time.monotonic()
    assert sink.deliver_event(1, EVENT) is False
    assert time.monotonic() - t0 < 0.5
    assert not sink.connected


# --- tests ------------------------------------------------------------------------------------


def test_tls_with_password_publishes_availability_and_events(broker: TlsBroker, pki: Pki) -> None:
    states: list[bool] = []
    with subscribed(broker.port, f"{PREFIX}/#", setup=client_tls(pki)) as sub, \
            started(sink_config(pki, broker.port, "ok"), on_state=states.append) as sink:
        wait_until(lambda: sink.connected)
        sub.wait_for(lambda m: any(t == sink.available_topic and p == b"online" for t, p, _ in m))
        assert sink.deliver_event(1, EVENT) is True
        sub.wait_for(lambda m: any(t == sink.events_topic for t, _, _ in m))
    assert [json.loads(p) for p in sub.on(f"{PREFIX}/events")] == [EVENT]
    assert sub.on(f"{PREFIX}/available")[0] == b"online"
    assert states == [True, False]


def test_wrong_password_never_connects_fails_fast_and_logs_once(
        broker: TlsBroker, pki: Pki, caplog: pytest.LogCaptureFixture) -> None:
    states: list[bool] = []
    with started(sink_config(pki, broker.port, "badpw", password="wrong"),
                 on_state=states.append) as sink:
        # Refused, retried after the first backoff step, refused again.
        wait_until(lambda: broker.log_count("not authorised") >= 2)
        assert_fails_fast(sink)
    assert states == []
    warnings = sink_warnings(caplog)
    assert len(warnings) == 1, warnings
    assert "refused" in warnings[0] and "authori" in warnings[0].lower()


def test_listener_requiring_a_client_certificate(
        broker: TlsBroker, pki: Pki, caplog: pytest.LogCaptureFixture) -> None:
    with started(sink_config(pki, broker.cert_port, "nocert")) as sink:
        wait_until(lambda: bool(sink_warnings(caplog)))  # an attempt failed, and said so
        assert_fails_fast(sink)
    assert len(sink_warnings(caplog)) == 1, sink_warnings(caplog)

    cfg = sink_config(pki, broker.cert_port, "cert", tls_cert_file=str(pki.cert("client")),
                      tls_key_file=str(pki.key("client")))
    with started(cfg) as sink:
        wait_until(lambda: sink.connected)
        assert sink.deliver_event(1, EVENT) is True


def test_hostname_check_unless_tls_insecure(
        broker: TlsBroker, pki: Pki, caplog: pytest.LogCaptureFixture) -> None:
    with started(sink_config(pki, broker.localhost_port, "strict")) as sink:
        wait_until(lambda: bool(sink_warnings(caplog)))  # the handshake failed, and said so
        assert_fails_fast(sink)

    cfg = sink_config(pki, broker.localhost_port, "insecure", tls_insecure=True)
    with started(cfg) as sink:
        wait_until(lambda: sink.connected)
        assert sink.deliver_event(1, EVENT) is True
