"""Outputs: events out. The writer thread writes each event to the store first (with its snapshot),
then the publisher thread sends the store's unpublished events, in order, through the sinks (MQTT,
stdout), and marks them only once the primary sink has them: a broker outage loses nothing.

  store.py      EventStore: SQLite, the order of everything published; payloads
  writer.py     Writer, the thread that writes: events, snapshots, retention (thread "emitter")
  snapshots.py  an event's snapshot: the peak frame with heatmap and box, as a JPEG
  publisher.py  Publisher, the thread that sends; Sinks, the configured sinks as one; Sink
  mqtt.py       MqttSink: events, states, scores, snapshots, availability, discovery
  stdout.py     StdoutSink: events as JSON lines
"""

from stream_detector.outputs.mqtt import MqttSink
from stream_detector.outputs.publisher import Publisher, Sink, Sinks
from stream_detector.outputs.snapshots import renderer_by_model, renderer_for, scale_box
from stream_detector.outputs.stdout import StdoutSink
from stream_detector.outputs.store import (
    FILE_NAME,
    EventStore,
    StoredEvent,
    event_payload,
    stored_events,
)
from stream_detector.outputs.writer import Renderer, Retention, Writer

__all__ = [
    "FILE_NAME",
    "EventStore",
    "MqttSink",
    "Publisher",
    "Renderer",
    "Retention",
    "Sink",
    "Sinks",
    "StdoutSink",
    "StoredEvent",
    "Writer",
    "event_payload",
    "renderer_by_model",
    "renderer_for",
    "scale_box",
    "stored_events",
]
