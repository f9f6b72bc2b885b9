"""Outputs: events out. The writer thread writes each event to the store first (with its snapshot),
then the publisher thread sends the store's unpublished events, in order, through the sinks (MQTT,
stdout), and marks them only once the primary sink has them: a broker outage loses nothing.

  store.py      EventStore: SQLite, the order of everything published; payloads
  writer.py     Writer, the thread that writes: events, snapshots, retention (thread "emitter")
  clips.py      Clipper, the thread that joins an ended event's recorded segments into its clip
  event_index.py  one row per event beside the store's messages: listing, filters, verdicts
  review.py     Reviews: operators' verdicts (HTTP and MQTT), checked and stored
  api.py        the review API and page (page/: HTML, CSS, JS) as routes for the web server
  snapshots.py  an event's snapshot: the peak frame with heatmap and box, as a JPEG
  publisher.py  Publisher, the thread that sends; Sinks, the configured sinks as one; Sink
  mqtt.py       MqttSink: events, states, scores, snapshots, availability, discovery
  stdout.py     StdoutSink: events as JSON lines
"""

from stream_detector.outputs.api import access_guard, review_routes
from stream_detector.outputs.clips import Clipper, ClipResult
from stream_detector.outputs.event_index import VERDICTS
from stream_detector.outputs.mqtt import MqttSink
from stream_detector.outputs.publisher import Publisher, Sink, Sinks
from stream_detector.outputs.review import EVENT_ID, Reviews, VerdictError
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
    "EVENT_ID",
    "FILE_NAME",
    "VERDICTS",
    "ClipResult",
    "Clipper",
    "EventStore",
    "MqttSink",
    "Publisher",
    "Renderer",
    "Retention",
    "Reviews",
    "Sink",
    "Sinks",
    "StdoutSink",
    "StoredEvent",
    "VerdictError",
    "Writer",
    "access_guard",
    "event_payload",
    "renderer_by_model",
    "renderer_for",
    "review_routes",
    "scale_box",
    "stored_events",
]
