"""Video files read from start to end (fitting, scoring, evaluation, start-up checks): opening one
with OpenCV, its size and rate, every frame in order, and the video files of a folder.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from stream_detector.errors import SourceError

VIDEO_SUFFIXES = (".mp4", ".avi", ".mkv", ".mov", ".m4v", ".webm", ".mpg", ".mpeg", ".ts", ".wmv")


@dataclass(frozen=True)
class VideoInfo:
    width: int
    height: int
    fps: float  # 0 when the container does not say
    frames: int  # container's count; may be approximate, decode to be sure

def expand_sources(paths: Sequence[str | Path]) -> list[Path]:
    """Files as given, folders as their video files in name order. Missing paths are a SourceError."""
    out: list[Path] = []
    for raw in paths:
        path = Path(raw)
        if path.is_dir():
            found = sorted(p for p in path.iterdir() if p.suffix.lower() in VIDEO_SUFFIXES)
            if not found:
                raise SourceError(f"{path}: folder holds no video files ({', '.join(VIDEO_SUFFIXES)})")
            out.extend(found)
        elif path.is_file():
            out.append(path)
        else:
            raise SourceError(f"{path}: no such file or folder")
    return out


# Decoder threads per camera in the daemon: cameras decode in parallel on their own threads, and one
# each keeps N cameras from running N x cores decoder threads that preempt each other and the model
# (measured: the single-camera live path 0.50-0.53x decode-only with FFmpeg's default, 0.55-0.56x with 1).
DECODE_THREADS = 1


def open_capture(path: Path, decode_threads: int = 0) -> cv2.VideoCapture:
    """Open a video file with OpenCV's FFmpeg backend, or raise a one-line SourceError.

    decode_threads: FFmpeg's decoding threads (0 = its default, one per core)."""
    if not path.is_file():
        raise SourceError(f"{path}: no such file")
    if not os.access(path, os.R_OK):
        raise SourceError(f"{path}: permission denied")
    params = [cv2.CAP_PROP_N_THREADS, decode_threads] if decode_threads else []
    cap = cv2.VideoCapture(str(path), cv2.CAP_FFMPEG, params)
    if not cap.isOpened():
        cap.release()
        raise SourceError(f"{path}: not a readable video")
    return cap


def video_info(path: Path) -> VideoInfo:
    cap = open_capture(path)
    try:
        ok, frame = cap.read()
        if not ok or frame is None:
            raise SourceError(f"{path}: not a readable video (no frame could be decoded)")
        fps = float(cap.get(cv2.CAP_PROP_FPS) or 0.0)
        count = int(cap.get(cv2.CAP_PROP_FRAME_COUNT) or 0)
        return VideoInfo(frame.shape[1], frame.shape[0], fps if 0 < fps < 1000 else 0.0, count)
    finally:
        cap.release()


def iter_frames(path: Path, limit: int | None = None) -> Iterator[np.ndarray]:
    """Decode every frame of a file in order (BGR uint8). The first frame must decode."""
    cap = open_capture(path)
    try:
        n = 0
        while limit is None or n < limit:
            ok, frame = cap.read()
            if not ok or frame is None:
                break
            n += 1
            yield frame
        if n == 0:
            raise SourceError(f"{path}: not a readable video (no frame could be decoded)")
    finally:
        cap.release()
