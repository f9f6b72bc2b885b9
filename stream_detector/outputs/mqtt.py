"""MQTT output: events and verdicts, per-camera anomaly state, scores, snapshots and last event,
availability and the Home Assistant discovery configs; verdicts set by `<camera>/verdict/set`.
paho's own thread owns the connection and its reconnects.
"""

from __future__ import annotations

import json
import logging
import re
import ssl
import threading
import time
from collections.abc import Callable, Sequence
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion, MQTTErrorCode
from paho.mqtt.reasoncodes import ReasonCode

from stream_detector.config import MqttConfig, host_node_id
from stream_detector.errors import ConfigError

log = logging.getLogger("stream_detector.sinks.mqtt")  # its name before outputs/: tests use it

ONLINE, OFFLINE = "online", "offline"
RETAINED = ("anomaly", "tampered", "snapshot", "last_event")  # a camera's retained topics, cleared when it goes


class MqttSink:
    """Publishes to `<topic_prefix>/...`, by default `stream-detector/<node>/...`: every host of a
    fleet in its own namespace (availability, Last Will, client id and Home Assistant ids too).
    Nothing here blocks for long while the broker is away.

    `on_state(connected)` is called from paho's thread on every connect/disconnect (metrics);
    `on_verdict(camera, payload)` with each message on `<prefix>/<camera>/verdict/set` (paho's
    thread too); `public_url()` is the review API's address, for the clip URLs it publishes.
    """

    name = "mqtt"
    takes_snapshots = True

    def __init__(self, config: MqttConfig, cameras: Sequence[str], *, node: str = "",
                 on_state: Callable[[bool], None] | None = None, ack_timeout: float = 5.0,
                 clock: Callable[[], float] = time.monotonic,
                 on_verdict: Callable[[str, bytes], None] | None = None,
                 public_url: Callable[[], str] | None = None) -> None:
        self.config = config
        self.cameras = tuple(cameras)
        self.connected = False
        self.publish_failures = 0
        self._on_state = on_state
        self._ack_timeout = ack_timeout
        self._clock = clock
        self.node = node or host_node_id()
        self._prefix = config.topic_prefix or f"stream-detector/{self.node}"
        self.available_topic = f"{self._prefix}/available"
        self.events_topic = f"{self._prefix}/events"
        self.verdict_topic = f"{self._prefix}/events/verdict"
        self._on_verdict = on_verdict
        self._public_url = public_url
        self._last_event: dict[str, dict[str, Any]] = {}  # camera -> its last event's attributes
        self._lock = threading.Lock()
        self._states: dict[str, bool] = {}  # re-published on connect: the broker may have lost them
        self._tampered: dict[str, bool] = {}  # likewise
        self._clear: set[str] = set()  # retained topics of removed cameras, still to be cleared
        self._last_score: dict[str, float] = {}
        self._down_logged = False
        self._stopping = False
        client_id = config.client_id or f"stream-detector-{self.node}"
        self._client = mqtt.Client(callback_api_version=CallbackAPIVersion.VERSION2,
                                   client_id=client_id)
        self._client.on_connect = self._handle_connect
        self._client.on_connect_fail = self._handle_connect_fail
        self._client.on_disconnect = self._handle_disconnect
        self._client.on_message = self._handle_message

    def start(self) -> None:
        """Configure the client and connect in the background; TLS file problems fail fast."""
        c, client = self.config, self._client
        if c.username:
            client.username_pw_set(c.username, c.password or None)
        if c.tls_ca_file:
            try:
                client.tls_set(ca_certs=c.tls_ca_file, certfile=c.tls_cert_file or None,
                               keyfile=c.tls_key_file or None)
            except (OSError, ssl.SSLError) as exc:
                raise ConfigError(f"mqtt.tls_ca_file: cannot load TLS files ({exc})") from None
            client.tls_insecure_set(c.tls_insecure)
        client.will_set(self.available_topic, OFFLINE, qos=1, retain=True)
        client.reconnect_delay_set(1, 30)
        client.connect_async(c.host, c.port, keepalive=c.keepalive)
        client.loop_start()

    def stop(self, timeout: float = 2.0) -> None:
        """Say "offline" ourselves (a clean disconnect suppresses the Will), then disconnect."""
        self._stopping = True
        if self.connected:
            info = self._client.publish(self.available_topic, OFFLINE, qos=1, retain=True)
            self._wait_ack(info, timeout)
        self._client.disconnect()
        self._client.loop_stop()

    def deliver_event(self, seq: int, payload: dict[str, Any]) -> bool:
        """Publish on `<prefix>/events` (a verdict: `<prefix>/events/verdict`); True only after
        the broker acknowledged it (QoS >= 1). Then the camera's `last_event` follows it."""
        if not self.connected:
            return False
        verdict = payload.get("type") == "verdict"
        info = self._client.publish(self.verdict_topic if verdict else self.events_topic,
                                    json.dumps(payload), qos=self.config.qos)
        if self.config.qos == 0:
            ok = self._check(info)
        elif not (ok := self._wait_ack(info, self._ack_timeout)):
            self._count_failure()
        if ok:
            self._publish_last_event(payload)
        return ok

    def _publish_last_event(self, payload: dict[str, Any]) -> None:
        """`<prefix>/<camera>/last_event` (retained): id, times, clip URL and verdict of the
        camera's newest event: the attributes of its Home Assistant entities."""
        if payload.get("type") == "verdict":
            camera, last = payload["camera"], self._last_event.get(payload["camera"])
            if last is None or last["event_id"] != payload["id"]:
                return  # a verdict on an older event: the attributes show the newest one
            attrs = {**last, "verdict": payload["verdict"]}
        else:
            after = payload.get("after")
            if not isinstance(after, dict) or "camera" not in after:
                return  # not an event payload: nothing to show (the event itself went out)
            camera, base = after["camera"], self._public_url() if self._public_url else ""
            url = f"{base}/api/events/{after['id']}" if base else None
            last = self._last_event.get(camera) or {}
            attrs = {"event_id": after["id"], "start_time": after["start_time"],
                     "end_time": after["end_time"], "peak_score": after["peak_score"],
                     "clip_url": f"{url}/clip.mp4" if url and after.get("has_clip") else None,
                     "snapshot_url": f"{url}/snapshot.jpg" if url and after.get("snapshot") else None,
                     "verdict": last.get("verdict") if last.get("event_id") == after["id"] else None}
        with self._lock:
            if camera not in self.cameras:  # removed: its retained topics were cleared
                return
            self._last_event[camera] = attrs
        self._check(self._client.publish(f"{self._prefix}/{camera}/last_event", json.dumps(attrs),
                                         qos=1, retain=True))

    def anomaly_state(self, camera: str, on: bool) -> None:
        """Retained: only for a configured camera (a removed camera's last event, delivered after
        its topics were cleared, must not bring them back)."""
        with self._lock:
            if camera not in self.cameras:
                return
            self._states[camera] = on
        if self.connected:
            self._publish_state(camera, on)

    def tamper_state(self, camera: str, on: bool) -> None:
        """Retained, like anomaly_state: only for a configured camera."""
        with self._lock:
            if camera not in self.cameras:
                return
            self._tampered[camera] = on
        if self.connected:
            self._publish_state(camera, on, "tampered")

    def score(self, camera: str, value: float) -> None:
        """At most one score per camera per `score_interval` seconds; the rest are dropped."""
        now = self._clock()
        with self._lock:
            last = self._last_score.get(camera)
            if last is not None and now - last < self.config.score_interval:
                return
            self._last_score[camera] = now
        if self.connected:
            self._check(self._client.publish(f"{self._prefix}/{camera}/score", f"{value:.4f}"))

    def cameras_changed(self, cameras: Sequence[str]) -> None:
        """Cameras added by a reload get their discovery configs now, not at the next reconnect;
        removed ones have theirs cleared (an empty retained config deletes the entity), and their
        retained anomaly and tampered states and snapshot too, so no subscriber is told of a camera that is
        gone. Clears the broker misses (disconnected) are sent at the next connect."""
        with self._lock:
            old_configs, old_cameras = set(self._discovery_configs()), set(self.cameras)
            self.cameras = tuple(cameras)
            removed = sorted(old_cameras - set(cameras))
            for camera in removed:
                self._states.pop(camera, None)
                self._tampered.pop(camera, None)
                self._last_score.pop(camera, None)
                self._last_event.pop(camera, None)
            configs = self._discovery_configs()
            self._clear |= old_configs - set(configs)
            self._clear |= {f"{self._prefix}/{c}/{what}" for c in removed for what in RETAINED}
            self._clear -= set(configs)  # a camera removed, then added back before the clear
            self._clear -= {f"{self._prefix}/{c}/{what}" for c in cameras for what in RETAINED}
        if self.connected:
            self._send_clears(self._client)
            if self.config.homeassistant_prefix:
                for topic, config in configs.items():
                    self._check(self._client.publish(topic, json.dumps(config), qos=1, retain=True))

    def _send_clears(self, client: mqtt.Client) -> None:
        """An empty retained message deletes what the broker retains on each topic to clear."""
        with self._lock:
            topics, self._clear = sorted(self._clear), set()
        for topic in topics:
            info = client.publish(topic, b"", qos=1, retain=True)
            if info.rc != MQTTErrorCode.MQTT_ERR_SUCCESS:
                with self._lock:
                    self._clear.add(topic)  # the next connect tries again

    def snapshot(self, camera: str, jpeg: bytes) -> None:
        if self.connected and camera in self.cameras:  # retained too: as anomaly_state
            self._check(self._client.publish(f"{self._prefix}/{camera}/snapshot", jpeg,
                                             retain=True))

    # --- paho callbacks (paho's network thread) -------------------------------------------------

    def _handle_connect(self, client: mqtt.Client, userdata: Any, flags: mqtt.ConnectFlags,
                        reason_code: ReasonCode, properties: Any) -> None:
        if reason_code.is_failure:
            if not self._down_logged:
                log.warning("MQTT broker %s:%d refused the connection: %s", self.config.host,
                            self.config.port, reason_code)
            self._down_logged = True
            return
        client.publish(self.available_topic, ONLINE, qos=1, retain=True)
        if self._on_verdict is not None:
            client.subscribe(f"{self._prefix}/+/verdict/set", qos=1)
        self._send_clears(client)
        if self.config.homeassistant_prefix:
            for topic, config in self.discovery_configs().items():
                client.publish(topic, json.dumps(config), qos=1, retain=True)
        with self._lock:
            states = dict(self._states)
            tampered = dict(self._tampered)
        for camera, on in states.items():
            self._publish_state(camera, on)
        for camera, on in tampered.items():
            self._publish_state(camera, on, "tampered")
        self.connected = True
        self._down_logged = False
        log.info("connected to MQTT broker %s:%d", self.config.host, self.config.port)
        if self._on_state is not None:
            self._on_state(True)

    def _handle_connect_fail(self, client: mqtt.Client, userdata: Any) -> None:
        if not self._down_logged:
            log.warning("cannot reach MQTT broker %s:%d; retrying with backoff",
                        self.config.host, self.config.port)
        self._down_logged = True

    def _handle_disconnect(self, client: mqtt.Client, userdata: Any,
                           flags: mqtt.DisconnectFlags, reason_code: ReasonCode,
                           properties: Any) -> None:
        was_connected, self.connected = self.connected, False
        if was_connected and not self._stopping:
            log.warning("lost MQTT broker %s:%d (%s); reconnecting", self.config.host,
                        self.config.port, reason_code)
            self._down_logged = True
        elif not was_connected and not self._stopping and not self._down_logged:
            # Dropped before any CONNACK, e.g. a TLS listener that requires a client certificate
            # none was configured for: neither on_connect nor on_connect_fail sees that.
            log.warning("MQTT broker %s:%d closed the connection before accepting it (%s); "
                        "retrying with backoff", self.config.host, self.config.port, reason_code)
            self._down_logged = True
        if was_connected and self._on_state is not None:
            self._on_state(False)

    def _handle_message(self, client: mqtt.Client, userdata: Any, message: mqtt.MQTTMessage) -> None:
        parts = message.topic.split("/")
        if self._on_verdict is None or parts[-2:] != ["verdict", "set"] or len(parts) < 3:
            return
        try:
            self._on_verdict(parts[-3], message.payload)
        except Exception:  # noqa: BLE001 - paho's thread must survive a bug in the handler
            log.exception("MQTT verdict on %s failed", message.topic)

    # --- helpers ----------------------------------------------------------------------------------

    def discovery_configs(self) -> dict[str, dict[str, Any]]:
        """Home Assistant MQTT discovery per camera, on a device per host: binary_sensors for the
        anomaly and for the picture being tampered with (a "problem"), the score sensor and an image
        (the last snapshot); the anomaly sensor and the image carry the last event's attributes. A
        prefix set by the user keeps the ids it had before node ids."""
        with self._lock:
            return self._discovery_configs()

    def _discovery_configs(self) -> dict[str, dict[str, Any]]:
        """discovery_configs, for a caller that holds the lock ({} without a discovery prefix)."""
        ha, p = self.config.homeassistant_prefix, self._prefix
        if not ha:
            return {}
        if self.config.topic_prefix:
            node = _object_id(p)
            name = f"{'stream-detector' if node == 'stream-detector' else node} on {self.node}"
        else:
            node, name = f"stream-detector_{self.node}", f"stream-detector on {self.node}"
        device = {"identifiers": [node], "name": name,
                  "manufacturer": "stream-detector", "model": "video anomaly detector"}
        common = {"availability_topic": self.available_topic, "payload_available": ONLINE,
                  "payload_not_available": OFFLINE, "device": device}
        out: dict[str, dict[str, Any]] = {}
        for cam in self.cameras:
            attributes = {"json_attributes_topic": f"{p}/{cam}/last_event"}
            out[f"{ha}/binary_sensor/{node}/{cam}_anomaly/config"] = {
                "name": f"{cam} anomaly", "unique_id": f"{node}_{cam}_anomaly",
                "state_topic": f"{p}/{cam}/anomaly", "payload_on": "ON", "payload_off": "OFF",
                "device_class": "motion", **attributes, **common}
            out[f"{ha}/image/{node}/{cam}_snapshot/config"] = {
                "name": f"{cam} snapshot", "unique_id": f"{node}_{cam}_snapshot",
                "image_topic": f"{p}/{cam}/snapshot", "content_type": "image/jpeg",
                **attributes, **common}
            out[f"{ha}/binary_sensor/{node}/{cam}_tampered/config"] = {
                "name": f"{cam} tampered", "unique_id": f"{node}_{cam}_tampered",
                "state_topic": f"{p}/{cam}/tampered", "payload_on": "ON", "payload_off": "OFF",
                "device_class": "problem", **common}
            out[f"{ha}/sensor/{node}/{cam}_score/config"] = {
                "name": f"{cam} anomaly score", "unique_id": f"{node}_{cam}_score",
                "state_topic": f"{p}/{cam}/score", "state_class": "measurement", **common}
        return out

    def _publish_state(self, camera: str, on: bool, topic: str = "anomaly") -> None:
        self._check(self._client.publish(f"{self._prefix}/{camera}/{topic}", "ON" if on else "OFF",
                                         qos=self.config.qos, retain=True))

    def _wait_ack(self, info: mqtt.MQTTMessageInfo, timeout: float) -> bool:
        """Wait for the PUBACK, giving up early if the connection drops meanwhile."""
        deadline = self._clock() + timeout
        try:
            while not info.is_published():
                if not self.connected or self._clock() >= deadline:
                    return False
                info.wait_for_publish(0.05)
        except (ValueError, RuntimeError):  # paho: not queued, or failed outright
            return False
        return True

    def _check(self, info: mqtt.MQTTMessageInfo) -> bool:
        if info.rc != MQTTErrorCode.MQTT_ERR_SUCCESS:
            self._count_failure()
            return False
        return True

    def _count_failure(self) -> None:
        with self._lock:
            self.publish_failures += 1


def _object_id(prefix: str) -> str:
    """Home Assistant object ids allow only [a-zA-Z0-9_-]; topic prefixes may contain '/'."""
    return re.sub(r"[^a-zA-Z0-9_-]", "_", prefix)
