"""`bench`: speed figures measured in one run, so they compare as ratios on a shared, noisy machine.

Decode only, decode + preprocess (+ motion), the model alone with its motion input (a batch of
windows, features cached per frame as in the live path), the full scoring path of every frame in one
thread, and the live path as the daemon runs one camera, on the same video.
"""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import torch

from stream_detector.capture import (
    DECODE_THREADS,
    DEMO_VIDEO,
    RateLimit,
    iter_frames,
    open_capture,
)
from stream_detector.config import InferenceConfig
from stream_detector.detect import (
    FramePreparer,
    Preprocessor,
    StreamChannels,
    WindowScorer,
)
from stream_detector.model import LoadedModel, configure_torch, load


@dataclass(frozen=True)
class BenchResult:
    name: str
    frames: int
    seconds: float

    @property
    def fps(self) -> float:
        return self.frames / self.seconds if self.seconds > 0 else float("inf")


def _timed(name: str, frames: int, fn: Callable[[], object]) -> BenchResult:
    start = time.perf_counter()
    fn()
    return BenchResult(name, frames, time.perf_counter() - start)


def bench(model_dir: Path, video: Path | None, limit: int, batch: int, threads: int,
          device: str) -> tuple[LoadedModel, list[BenchResult]]:
    """The `bench` command: the daemon's torch choices unless told otherwise (`threads` > 0), so
    the figures are the daemon's; then every stage on `video` (default: the demo video)."""
    configure_torch(InferenceConfig(torch_threads=threads))
    model = load(model_dir, device)
    return model, measure_stages(model, video or DEMO_VIDEO, limit, batch)


def measure_stages(model: LoadedModel, video: Path, limit: int, batch: int,
                   repeats: int = 3) -> list[BenchResult]:
    """Best of `repeats` for each stage (the minimum is the least disturbed by other load)."""
    prep = Preprocessor.for_model(model.metadata)
    raw = list(iter_frames(video, limit=limit))
    frames = np.stack([prep(f) for f in raw])
    n = len(frames)

    def decode() -> None:
        for _ in iter_frames(video, limit=limit):
            pass

    def decode_prep() -> None:
        for f in iter_frames(video, limit=limit):
            prep(f)

    def decode_prep_motion() -> None:  # and the scene channels, for models that have them
        channels = StreamChannels.for_detector(model.module)
        for f in iter_frames(video, limit=limit):
            channels(prep(f)[None])

    def model_only() -> None:
        scorer = WindowScorer(model.module, model.slicer, model.smoothing, model.device,
                              chunk=batch)
        scorer.push(frames)
        if model.device.type == "cuda":
            torch.cuda.synchronize()

    def full() -> None:
        scorer = WindowScorer(model.module, model.slicer, model.smoothing, model.device,
                              chunk=batch)
        chunk: list[np.ndarray] = []
        for f in iter_frames(video, limit=limit):
            chunk.append(prep(f))
            if len(chunk) == batch:
                scorer.push(np.stack(chunk))
                chunk = []
        if chunk:
            scorer.push(np.stack(chunk))

    def live() -> None:  # one frame at a time, as a single camera is scored when it keeps up
        scorer = WindowScorer(model.module, model.slicer, model.smoothing, model.device)
        for i in range(n):
            scorer.push(frames[i:i + 1])

    def live_path() -> None:
        """One camera as the daemon runs it: a reader thread decodes every frame and converts those
        due at the model's rate, the capture thread prepares them (preprocessing, motion), the
        inference thread scores what has queued in one call. Bounded queues between them (blocking
        here, so nothing is lost)."""
        decoded: queue.Queue[np.ndarray | None] = queue.Queue(maxsize=2)
        prepared: queue.Queue[np.ndarray | None] = queue.Queue(maxsize=16)

        def read() -> None:
            cap, rate = open_capture(video, DECODE_THREADS), RateLimit(fps)
            try:
                for i in range(n):
                    if not cap.grab():
                        break
                    if rate.due(i / source_fps):
                        ok, image = cap.retrieve()
                        if ok:
                            decoded.put(image)
            finally:
                cap.release()
                decoded.put(None)

        def prepare() -> None:
            preparer = FramePreparer.for_model(model)
            while (image := decoded.get()) is not None:
                prepared.put(preparer(image))
            prepared.put(None)

        threads = [threading.Thread(target=read, daemon=True), threading.Thread(target=prepare, daemon=True)]
        for thread in threads:
            thread.start()
        scorer = WindowScorer(model.module, model.slicer, model.smoothing, model.device,
                              chunk=batch, frames_prepared=True)
        done = False
        while not done:
            got = [prepared.get()]
            while not prepared.empty() and len(got) < batch:
                got.append(prepared.get())
            done = got[-1] is None
            ready = [g for g in got if g is not None]
            if ready:
                scorer.push(np.stack(ready))
        for thread in threads:
            thread.join()

    cap = open_capture(video)
    source_fps = float(cap.get(cv2.CAP_PROP_FPS) or 0.0) or 25.0
    cap.release()
    fps = float(model.metadata.get("fps") or 0.0)
    model_only()  # warm-up: first calls allocate and (on CUDA) pick kernels
    stages = [("decode", decode), ("decode+preprocess", decode_prep)]
    if int(model.module.motion_channels):
        scene = "+scene" if int(getattr(model.module, "scene_channels", 0)) else ""
        stages.append((f"decode+preprocess+motion{scene}", decode_prep_motion))
    stages += [("motion+model (batch of windows)", model_only), ("motion+model (one frame at a time)", live),
               ("full pipeline (decode+preprocess+motion+model)", full),
               (f"live path (decode all, score {fps:g} of {source_fps:g}/s)" if 0 < fps < source_fps
                else "live path (decode and score all)", live_path)]
    results = []
    for name, fn in stages:
        results.append(min((_timed(name, n, fn) for _ in range(repeats)), key=lambda r: r.seconds))
    return results
