"""Capture: frames in. Video files read whole (fitting, scoring, evaluation), and the live path: each
camera's source read by its own capture loop thread (reconnects, staleness, the scoring rate, frames
prepared for the model) into its frame queue, which never makes capture wait.

  files.py        video files read from start to end; a folder's videos
  source.py       the FrameSource protocol, the live sources' base, source kinds, resizing
  child.py        ChildSource: frames from a child process, its secret on a pipe, stopped from any thread
  opencv.py       OpenCVSource: USB devices and files decoded in-process; OpenCVProcessSource:
                  a network camera decoded by OpenCV in a reader process (opencv_reader.py)
  opencv_reader.py  the reader process's program (OpenCV and numpy only)
  ffmpeg.py       FFmpegSource: one ffmpeg child process per camera; what this ffmpeg can do
  demo.py         the demo stream (vtest.avi with an injected object)
  factory.py      a camera's sources from its config: backend, scored stream, main stream
  loop.py         CaptureLoop, the per-camera thread (a reader thread decodes beside it)
  main_stream.py  MainStream: the full-resolution stream read for snapshots only, its history
  recording.py    recorders for event clips: segments in a ring on disk (stream copy or encoded)
  frame_queue.py  FrameQueue: capture -> inference, bounded, drops named and counted
"""

from stream_detector.capture.demo import DEMO_SOURCE, DEMO_VIDEO, DemoSource, Injection
from stream_detector.capture.factory import (
    capture_backend,
    main_stream_config,
    probe,
    probe_frame,
    scored_config,
    source_for,
)
from stream_detector.capture.ffmpeg import FFmpegSource, ffmpeg_hwaccels, ffmpeg_missing
from stream_detector.capture.files import (
    DECODE_THREADS,
    VIDEO_SUFFIXES,
    VideoInfo,
    expand_sources,
    iter_frames,
    open_capture,
    video_info,
)
from stream_detector.capture.frame_queue import DropPolicy, FrameQueue, is_stream_state, never_dropped
from stream_detector.capture.loop import (
    Backoff,
    CaptureLoop,
    CaptureObserver,
    FrameReceiver,
    Preparing,
    RateLimit,
)
from stream_detector.capture.main_stream import NEAR, FrameHistory, MainStream
from stream_detector.capture.child import ChildSource
from stream_detector.capture.opencv import OpenCVProcessSource, OpenCVSource, opencv_source
from stream_detector.capture.recording import (
    SEGMENT_SECONDS,
    FrameRecorder,
    FrameTee,
    Recorder,
    Segment,
    SegmentRing,
    StreamRecorder,
    clip_dir,
    recording_kind,
    ring_dir,
)
from stream_detector.capture.source import (
    FrameFilter,
    FrameSource,
    LiveSource,
    ResizedSource,
    redact,
    source_kind,
)

__all__ = [
    "DECODE_THREADS",
    "DEMO_SOURCE",
    "DEMO_VIDEO",
    "NEAR",
    "SEGMENT_SECONDS",
    "VIDEO_SUFFIXES",
    "Backoff",
    "CaptureLoop",
    "CaptureObserver",
    "ChildSource",
    "DemoSource",
    "DropPolicy",
    "FFmpegSource",
    "FrameFilter",
    "FrameHistory",
    "FrameQueue",
    "FrameReceiver",
    "FrameRecorder",
    "FrameSource",
    "FrameTee",
    "Injection",
    "LiveSource",
    "MainStream",
    "OpenCVProcessSource",
    "OpenCVSource",
    "Preparing",
    "RateLimit",
    "Recorder",
    "ResizedSource",
    "Segment",
    "SegmentRing",
    "StreamRecorder",
    "VideoInfo",
    "capture_backend",
    "clip_dir",
    "expand_sources",
    "ffmpeg_hwaccels",
    "ffmpeg_missing",
    "is_stream_state",
    "iter_frames",
    "main_stream_config",
    "never_dropped",
    "open_capture",
    "opencv_source",
    "probe",
    "probe_frame",
    "recording_kind",
    "redact",
    "ring_dir",
    "scored_config",
    "source_for",
    "source_kind",
    "video_info",
]
