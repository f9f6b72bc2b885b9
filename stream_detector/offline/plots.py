"""The `eval` report's pictures: the ROC curve and per-clip score timelines with labels, threshold
and alarms. Drawn with OpenCV, so nothing needs a plotting library.
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

BLACK, GREY = (0, 0, 0), (170, 170, 170)
BLUE, RED, SHADE = (200, 90, 20), (40, 40, 220), (200, 200, 255)
FONT = cv2.FONT_HERSHEY_SIMPLEX


def _text(img: np.ndarray, text: str, org: tuple[int, int], scale: float = 0.45) -> None:
    cv2.putText(img, text, org, FONT, scale, BLACK, 1, cv2.LINE_AA)


def write_png(path: Path, img: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    if not cv2.imwrite(str(path), img):
        raise OSError(f"{path}: could not write image")


def roc_plot(fpr: np.ndarray, tpr: np.ndarray, title: str, size: int = 480) -> np.ndarray:
    img = np.full((size, size, 3), 255, np.uint8)
    m = 50
    side = size - 2 * m
    def pt(x: float, y: float) -> tuple[int, int]:
        return int(m + x * side), int(size - m - y * side)
    for v in np.linspace(0, 1, 6):
        cv2.line(img, pt(v, 0), pt(v, 1), (235, 235, 235), 1)
        cv2.line(img, pt(0, v), pt(1, v), (235, 235, 235), 1)
        _text(img, f"{v:.1f}", (pt(v, 0)[0] - 10, size - m + 18), 0.4)
        _text(img, f"{v:.1f}", (m - 35, pt(0, v)[1] + 4), 0.4)
    cv2.rectangle(img, pt(0, 1), pt(1, 0), BLACK, 1)
    cv2.line(img, pt(0, 0), pt(1, 1), GREY, 1, cv2.LINE_AA)
    pts = np.array([pt(float(x), float(y)) for x, y in zip(fpr, tpr)], np.int32)
    cv2.polylines(img, [pts], False, BLUE, 2, cv2.LINE_AA)
    _text(img, title, (m, 30), 0.5)
    _text(img, "false positive rate", (size // 2 - 70, size - 10))
    _text(img, "TPR", (5, m - 10))
    return img


def timeline_plot(name: str, scores: np.ndarray, labels: np.ndarray | None, threshold: float,
                  alarms: list[tuple[int, int, int]] = (), width: int = 900,  # type: ignore[assignment]
                  height: int = 220) -> np.ndarray:
    """Score over frames; ground-truth anomalies shaded; the calibrated threshold dashed; alarms
    (start, raised, end frames) as red bars under the plot with a tick where `start` is published."""
    img = np.full((height, width, 3), 255, np.uint8)
    left, right, top, bottom = 50, 10, 25, 25
    n = len(scores)
    lo = min(0.0, float(scores.min()))
    hi = max(float(scores.max()), threshold) * 1.05 + 1e-6
    def x_of(i: float) -> int:
        return int(left + i / max(1, n - 1) * (width - left - right))
    def y_of(v: float) -> int:
        return int(height - bottom - (v - lo) / (hi - lo) * (height - top - bottom))
    if labels is not None:
        for i in np.nonzero(labels)[0]:
            cv2.rectangle(img, (x_of(i - 0.5), top), (x_of(i + 0.5), height - bottom), SHADE, -1)
    cv2.rectangle(img, (left, top), (width - right, height - bottom), BLACK, 1)
    ty = y_of(threshold)
    for x in range(left, width - right, 12):
        cv2.line(img, (x, ty), (min(x + 6, width - right), ty), RED, 1)
    pts = np.array([(x_of(i), y_of(float(v))) for i, v in enumerate(scores)], np.int32)
    cv2.polylines(img, [pts], False, BLUE, 1, cv2.LINE_AA)
    bar = height - bottom + 4
    for start, raised, end in alarms:
        cv2.rectangle(img, (x_of(start), bar), (max(x_of(end), x_of(start) + 1), bar + 5), RED, -1)
        cv2.line(img, (x_of(raised), top), (x_of(raised), bar + 5), RED, 1)
    _text(img, f"{name}  (shaded: labelled anomalous; dashed: threshold {threshold:.2f}; "
               f"red: alarms, line where raised)", (left, 17))
    _text(img, f"{hi:.1f}", (5, top + 10), 0.4)
    _text(img, f"{lo:.1f}", (5, height - bottom), 0.4)
    _text(img, f"frame {n - 1}", (width - right - 70, height - 8), 0.4)
    return img


def stack_plots(plots: list[np.ndarray]) -> np.ndarray:
    return np.vstack(plots) if plots else np.full((10, 10, 3), 255, np.uint8)
