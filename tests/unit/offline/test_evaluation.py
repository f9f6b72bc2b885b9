import json
from pathlib import Path

import numpy as np
import pytest

from stream_detector.errors import DataError
from stream_detector.offline.evaluation import (
    false_alarms,
    literature_scores,
    load_labelled,
    roc_auc,
    roc_curve,
)


def test_auc_matches_hand_computed_pairs() -> None:
    # positives 0.8, 0.4; negatives 0.5, 0.1, 0.4.
    # pairs (pos > neg): 0.8 beats all 3; 0.4 beats 0.1, ties 0.4 (half), loses to 0.5 -> 4.5 / 6
    scores = np.array([0.8, 0.5, 0.4, 0.1, 0.4])
    labels = np.array([1, 0, 1, 0, 0])
    assert roc_auc(scores, labels) == pytest.approx(4.5 / 6)
    assert roc_auc(-scores, labels) == pytest.approx(1.5 / 6)
    assert np.isnan(roc_auc(scores, np.ones(5)))


def test_roc_curve_ends_at_corners_and_integrates_to_auc() -> None:
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 2, 300)
    scores = rng.normal(size=300) + labels
    fpr, tpr = roc_curve(scores, labels)
    assert (fpr[0], tpr[0]) == (0, 0) and (fpr[-1], tpr[-1]) == (1, 1)
    trapezoid = float(np.sum(np.diff(fpr) * (tpr[1:] + tpr[:-1]) / 2))
    assert trapezoid == pytest.approx(roc_auc(scores, labels), abs=1e-9)


def test_false_alarms_count_runs_outside_labelled_anomalies() -> None:
    s = np.array([0, 5, 5, 0, 0, 5, 0, 5, 5, 0], float)
    y = np.array([0, 0, 0, 0, 0, 0, 0, 1, 0, 0])
    # runs above 1: [1,2] normal, [5] normal, [7,8] touches the anomaly -> 2 false alarms
    # normal frames 9 at 1 fps = 9 s -> 2 / (9/3600) per hour
    assert false_alarms([s], [y], 1.0, fps=1.0) == pytest.approx(2 / (9 / 3600))


def test_literature_scores_are_normalised_per_clip() -> None:
    out = literature_scores([np.array([10.0, 20.0, 30.0] * 5), np.array([1.0, 1.0])])
    assert out[0].min() >= 0 and out[0].max() <= 1
    assert (out[1] == 0).all()


def _dataset(tmp_path: Path, labels: object) -> Path:
    (tmp_path / "test").mkdir()
    (tmp_path / "test" / "a.mp4").write_bytes(b"")
    (tmp_path / "labels.json").write_text(json.dumps(labels))
    return tmp_path


def test_labelled_set_problems_are_clear(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="no labels.json"):
        load_labelled(tmp_path)
    with pytest.raises(DataError, match="no labels for a.mp4"):
        load_labelled(_dataset(tmp_path, {"b": [0]}))


def test_extra_labels_and_bad_values_are_rejected(tmp_path: Path) -> None:
    d = _dataset(tmp_path, {"a": [0, 1], "zzz": [0]})
    with pytest.raises(DataError, match="labels for zzz but no such video"):
        load_labelled(d)
    (d / "labels.json").write_text(json.dumps({"a": [0, 2]}))
    with pytest.raises(DataError, match="list of 0/1"):
        load_labelled(d)


def test_operator_metrics_against_a_hand_computed_case() -> None:
    from stream_detector.offline.evaluation import Alarm, episodes_of, operator_metrics

    # clip a: episodes at frames 10-19 and 40-44; clip b: all normal (100 frames), 10 fps.
    a = np.zeros(60, np.int8)
    a[10:20] = 1
    a[40:45] = 1
    b = np.zeros(100, np.int8)
    assert episodes_of(a) == [(10, 19), (40, 44)]
    alarms = [
        Alarm("a", start=8, raised=13, end=25, box=(0, 0, 10, 10)),  # raised 0.3 s into episode 1
        Alarm("a", start=30, raised=33, end=36),  # between the episodes: false
        Alarm("b", start=50, raised=55, end=70),  # on normal footage: false
        Alarm("b", start=80, raised=85, end=99),  # another false one
    ]
    masks = {"a": np.zeros((60, 20, 20), bool)}
    masks["a"][13, 5, 5] = True  # the labelled pixel lies inside the alarm's box at the raised frame
    r = operator_metrics(["a", "b"], [a, b], alarms, fps=10.0, masks=masks)
    assert [e.alarmed for e in r.episodes] == [True, False]
    assert r.episodes[0].delay_seconds == pytest.approx(0.3) and r.episodes[1].delay_seconds is None
    assert r.episodes[0].box_overlaps is True
    assert len(r.false_alarms) == 3
    normal_seconds = (60 - 15 + 100) / 10.0
    assert r.false_alarms_per_hour == pytest.approx(3 / (normal_seconds / 3600))
    assert r.median_delay == pytest.approx(0.3)
    d = r.as_dict()
    assert d["episodes_alarmed"] == 1 and d["alarm_boxes_on_anomaly"] == (1, 1)


def test_an_alarm_already_on_when_an_episode_starts_has_no_delay() -> None:
    from stream_detector.offline.evaluation import Alarm, operator_metrics

    y = np.r_[np.zeros(20), np.ones(10)].astype(np.int8)
    r = operator_metrics(["c"], [y], [Alarm("c", start=15, raised=18, end=29)], fps=10.0)
    assert r.episodes[0].delay_seconds == 0.0 and not r.false_alarms
