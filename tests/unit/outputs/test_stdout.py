"""The stdout sink: one JSON line per event."""

from __future__ import annotations

import io
import json

from conftest import make_event

from stream_detector.outputs import StdoutSink, event_payload


def test_stdout_sink_writes_json_lines() -> None:
    out = io.StringIO()
    sink = StdoutSink(out)
    payload = event_payload(make_event(1), None, host="cam-host")
    assert sink.deliver_event(1, payload)
    assert json.loads(out.getvalue().splitlines()[0]) == payload
