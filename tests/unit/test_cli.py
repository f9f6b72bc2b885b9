"""The command line beyond the bad-input table: a good config passes and creates nothing, probes,
re-sealing an edited model card, and the `events` listing.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from conftest import write_cfg

from stream_detector import cli
from stream_detector.config import DEFAULT_MODEL, load_daemon_config
from stream_detector.errors import ModelError
from stream_detector.messages import Event
from stream_detector.model import runtime
from stream_detector.outputs import EventStore, event_payload


def test_a_good_config_passes_and_creates_nothing(tmp_path: Path,
                                                  capsys: pytest.CaptureFixture[str]) -> None:
    cfg = write_cfg(tmp_path, '[mqtt]\nhost = "localhost"\n')
    assert cli.main(["check-config", str(cfg)]) == 0
    assert "ok (1 camera(s): door)" in capsys.readouterr().out
    assert [p.name for p in tmp_path.iterdir()] == ["c.toml"]


def test_probe_reads_a_frame_from_each_camera(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["check-config", "--probe", str(write_cfg(tmp_path))]) == 0
    out = capsys.readouterr().out
    assert "camera door: ok, 768x576 frames" in out and "each delivered a frame" in out


def test_an_edited_model_card_breaks_the_seal_until_signed_again(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    model = tmp_path / "vtest"
    shutil.copytree(DEFAULT_MODEL, model)
    card = model / "MODEL_CARD.md"
    card.write_text(card.read_text() + "\nA note.\n")
    with pytest.raises(ModelError, match=r"MODEL_CARD\.md: checksum does not match"):
        runtime.load(model, "cpu")
    assert cli.main(["sign", str(model)]) == 0 and "signed" in capsys.readouterr().out
    assert runtime.load(model, "cpu").threshold(1.0) == runtime.load(DEFAULT_MODEL, "cpu").threshold(1.0)
    assert (model / "model.pt").read_bytes() == (DEFAULT_MODEL / "model.pt").read_bytes()


def test_events_lists_each_row_at_its_own_time(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    import datetime as dt

    cfg = write_cfg(tmp_path)
    store = EventStore.from_config(load_daemon_config(cfg).storage)
    start = Event("e1", "door", "start", 1000.0, 0.0, None, None, 5.0, 0, None, 5.0)
    update = Event("e1", "door", "update", 1000.0, 0.0, None, None, 6.0, 3, None, 6.0, update_wall=1600.0)
    end = Event("e1", "door", "end", 1000.0, 0.0, 2200.0, 12.0, 6.0, 3, None, 0.5)
    for ev in (start, update, end):
        store.append(ev, event_payload(ev, None, host="cam-host"))
    store.close()
    assert cli.main(["events", "--config", str(cfg)]) == 0
    rows = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    want = [dt.datetime.fromtimestamp(t).isoformat(timespec="seconds") for t in (1000, 1600, 2200)]
    assert [r["time"] for r in rows] == want and [r["type"] for r in rows] == ["start", "update", "end"]
