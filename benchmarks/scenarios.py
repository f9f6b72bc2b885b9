"""Scenario kit: labelled clips of anomaly types the UCSD scenes lack, composited from real pixels.

A DEVELOPMENT AID, NOT A BENCHMARK OF RECORD. UCSD Ped1/Ped2 test anomalies are mostly cyclists,
skaters and carts; a fixed-camera detector should also notice a person standing where nobody
stands, loitering, lying or bending, a bag left behind, a thrown object, someone walking against the
flow, and it should stay quiet in a denser crowd, under camera shake and lighting drift. This script
builds such clips from footage we have: walkers cut out of held-out frames, composited onto held-out
frames (with their own real walkers), with per-frame labels. The composites are approximations (no
cast shadows, simple poses, looped gaits): use them to find weaknesses and regressions, never to
report accuracy.

    python benchmarks/scenarios.py --out DIR [--scenes vtest,ped2,ped1] [--seed 0] \
        [--data ../shared/data] [--vtest PATH]

Per scene, DIR/<scene>/ holds (`stream-detector fit --source DIR/<scene>/train` and
`stream-detector eval --data DIR/<scene>` run on it unchanged):
  train/*.mp4         normal footage to fit on: the first part of the scene's footage
  test/*.mp4          scenario and normal-but-disturbed clips, made only from the held-out part
  labels.json         {clip stem: [0/1 per decoded frame of test/<stem>.mp4]}
  scenarios.json      per clip: type, anomalous frames, per-frame box [x0, y0, x1, y1] (or null) of
                      what was inserted, held-out source frames, cutout sources, parameters
  preview/<stem>.jpg  6 frames of the clip, inserted things boxed in red, for a person to look at
Split: vtest frames 0-529 train (3 clips) / 530-794 held out; Ped2 Train001-012 / Train013-016;
Ped1 Train001-028 / Train029-034. Native size, 10 fps, H.264 (libx264 crf 12, yuv420p, GOP 10).
Clips loop the held-out footage forward when they need more of it (a cut, never reversed time).

How: background = per-pixel median of 200 train frames; foreground = |gray - background| with
hysteresis. The train part gives occupancy (share of frames a person-sized blob covers a pixel) and
per-cell histograms of optical-flow directions: where people stand, walk and which way. The
held-out part gives the person height per image row (a robust line through blob heights; Ped1 has
strong perspective) and walkers: isolated person-sized blobs followed frame to frame, cut out with a
feathered mask (cast shadows and ground at the feet removed), scaled to the row they are put on,
mirrored to face the way they go; real walkers nearer the camera stay in front of them.

Data terms: vtest.avi is OpenCV's sample video (Debian opencv-doc, permissive licence). UCSD
Ped1/Ped2 (V. Mahadevan et al., "Anomaly Detection in Crowded Scenes", CVPR 2010; cite it) come
without a licence: research use only, and only their train (normal) clips are read here. What this
script writes from them must stay outside the repository (an --out inside it is refused): never
commit or redistribute it.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import zlib
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np

FPS, CRF = 10, 12
VTEST = Path("/usr/share/doc/opencv-doc/examples/data/vtest.avi")
REPO = Path(__file__).resolve().parents[1]
UCSD_SPLIT = {"ped2": (16, 12), "ped1": (34, 28)}  # clips in train/, how many of them are fit on
# Per scene, polygons in fractions of (width, height): "ground", where feet may go (not walls,
# trees, sky); "quiet", where the `standing` person goes (its least occupied person-sized place;
# None: the whole ground). For UCSD that is the grass beside the walkway.
PLACES = {
    "vtest": {"ground": [(0, .27), (.42, .27), (.5, .22), (.8, .22), (1, .17), (1, .98), (0, .98)],
              "quiet": None},
    "ped2": {"ground": [(.2, .3), (.95, .3), (1, .45), (1, .98), (0, .98), (0, .45)],
             "quiet": [[(.2, .31), (.9, .31), (.9, .47), (.2, .47)],
                       [(.71, .96), (.92, .96), (.93, .84), (1, .83), (1, .98), (.71, .98)]]},
    "ped1": {"ground": [(.5, .2), (.78, .19), (1, .36), (1, .98), (0, .98), (0, .8), (.4, .46),
                        (.48, .35)],
             "quiet": [[(.63, .88), (.93, .43), (1, .41), (1, .85)]]},
}
Item = tuple["Sprite", np.ndarray, float, bool]  # sprite, 3x3 map to the frame, feet row, boxed


class KitError(Exception):
    """Bad input; reported as one line on stderr, exit code 2."""


def read_video(path: Path) -> list[np.ndarray]:
    """All decoded BGR frames of a video."""
    cap, frames = cv2.VideoCapture(str(path)), []
    while (got := cap.read())[0]:
        frames.append(got[1])
    cap.release()
    if not frames:
        raise KitError(f"{path}: no frames could be decoded")
    return frames


def write_video(path: Path, frames: list[np.ndarray]) -> None:
    """Encode near-lossless H.264 at 10 fps and check that it decodes to as many frames."""
    h, w = frames[0].shape[:2]
    cmd = ["ffmpeg", "-v", "error", "-y", "-f", "rawvideo", "-pix_fmt", "bgr24", "-s", f"{w}x{h}",
           "-framerate", str(FPS), "-i", "-", "-c:v", "libx264", "-preset", "medium",
           "-crf", str(CRF), "-g", str(FPS), "-pix_fmt", "yuv420p", str(path)]
    proc = subprocess.run(cmd, input=b"".join(f.tobytes() for f in frames), capture_output=True)
    if proc.returncode:
        raise KitError(f"ffmpeg failed on {path}: {proc.stderr.decode(errors='replace')[-200:]}")
    decoded = len(read_video(path))
    assert decoded == len(frames), f"{path}: {decoded} frames decoded, {len(frames)} written"


def gray(frame: np.ndarray) -> np.ndarray:
    return cv2.cvtColor(np.clip(frame, 0, 255).astype(np.uint8), cv2.COLOR_BGR2GRAY)


def smooth_noise(rng: np.random.Generator, n: int, sigma: float) -> np.ndarray:
    """n samples of smooth random noise in [-1, 1] (Gaussian-filtered white noise)."""
    k = np.exp(-0.5 * (np.arange(-3 * sigma, 3 * sigma + 1) / sigma) ** 2)
    x = np.convolve(rng.normal(size=n + len(k) - 1), k, "valid")
    return x / np.abs(x).max()


@dataclass
class Blob:
    """One foreground component of one held-out frame."""
    index: int                      # held-out frame
    box: tuple[int, int, int, int]  # x, y, w, h
    mask: np.ndarray                # bool, box-sized, holes filled

    @property
    def feet(self) -> tuple[float, float]:
        return self.box[0] + self.box[2] / 2, self.box[1] + self.box[3]


@dataclass
class Sprite:
    """A cutout: BGR pixels, alpha, anchor (feet or bottom centre) and height, in crop pixels."""
    bgr: np.ndarray
    alpha: np.ndarray
    anchor: tuple[float, float]
    height: float
    src: dict


@dataclass
class Walker:
    """A person followed over held-out frames: cutouts with leg motion, anchored on a line fit."""
    frames: list[Sprite]
    stand: Sprite        # the frame with the feet closest together
    heading: np.ndarray  # unit direction walked in the footage
    speed: float         # person heights per frame walked in the footage


@dataclass
class Scene:
    """A scene's footage and what was learnt from it."""
    name: str
    train: list[tuple[str, list[np.ndarray]]]
    held: list[np.ndarray]
    held_src: list[tuple[str, int]]  # (source clip, frame) of each held-out frame
    bg: np.ndarray | None = None     # gray background
    bg_bgr: np.ndarray | None = None
    color: bool = True
    thr: float = 20.0                # foreground threshold (gray levels)
    flicker: np.ndarray | None = None  # share of sampled train frames a pixel is foreground
    occ: np.ndarray | None = None    # share of train frames a pixel is covered by a person
    walk: np.ndarray | None = None   # ... by a moving person
    hist: np.ndarray | None = None   # (rows, cols, 8): train flow directions per cell
    cell: int = 8
    height: tuple[float, float] = (0.0, 0.0)  # person height = a + b * feet row
    ground: np.ndarray | None = None  # where feet may go
    quiet: np.ndarray | None = None   # where a `standing` person may go
    walkers: list[Walker] = field(default_factory=list)
    speed: float = 0.0               # usual walking speed, person heights per frame
    used: list[np.ndarray] = field(default_factory=list)  # places given to this type's clips
    taken: list[int] = field(default_factory=list)        # walkers (ids) given to them

    @property
    def size(self) -> tuple[int, int]:
        return self.held[0].shape[1], self.held[0].shape[0]

    def person_h(self, y: float) -> float:
        """Typical person height (px) with feet at image row y."""
        return max(4.0, self.height[0] + self.height[1] * y)

    def inside(self, p: np.ndarray, margin: float = 0) -> bool:
        return margin <= p[0] < self.size[0] - margin and margin <= p[1] < self.size[1] - margin

    def on_ground(self, p: np.ndarray) -> bool:
        return self.inside(p) and bool(self.ground[int(p[1]), int(p[0])])

    def foreground(self, frame: np.ndarray) -> np.ndarray:
        """|gray - background| over 0.6 thr in components that reach thr, closed (taller than
        wide, to join legs and torso) and opened; 0/1."""
        d = cv2.absdiff(gray(frame), self.bg)
        n, lab = cv2.connectedComponents((d > 0.6 * self.thr).astype(np.uint8))
        strong = np.bincount(lab.ravel(), weights=(d > self.thr).ravel(), minlength=n) > 0
        strong[0] = False
        k = max(1, self.size[0] // 250)
        close = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * k + 1, 4 * k + 1))
        m = cv2.morphologyEx(strong[lab].astype(np.uint8), cv2.MORPH_CLOSE, close)
        return cv2.morphologyEx(m, cv2.MORPH_OPEN, np.ones((3, 3), np.uint8))

    def blobs(self, frame: np.ndarray, index: int = -1) -> list[Blob]:
        """Foreground components big enough to be a far person, holes filled."""
        n, lab, stats, _ = cv2.connectedComponentsWithStats(self.foreground(frame))
        out = []
        for i in range(1, n):
            x, y, w, h, area = stats[i]
            if area >= max(12.0, 2e-4 * self.size[0] * self.size[1]):
                m = (lab[y:y + h, x:x + w] == i).astype(np.uint8)
                outline = cv2.findContours(m, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_NONE)[0]
                m = cv2.drawContours(m, outline, -1, 1, -1)
                out.append(Blob(index, (int(x), int(y), int(w), int(h)), m.astype(bool)))
        return out


def learn_background(s: Scene) -> None:
    """Background, foreground threshold, flicker map and ground masks."""
    frames = [f for _, clip in s.train for f in clip]
    pick = np.linspace(0, len(frames) - 1, min(200, len(frames))).astype(int)
    stack = np.stack([frames[i] for i in pick])
    s.bg_bgr = np.concatenate([np.median(stack[:, r:r + 32], axis=0)
                               for r in range(0, stack.shape[1], 32)])  # by bands: less memory
    s.bg = gray(s.bg_bgr)
    s.color = float(np.abs(np.diff(s.bg_bgr.reshape(-1, 3), axis=1)).mean()) > 2
    noise = np.median([np.median(cv2.absdiff(gray(f), s.bg)) for f in stack[::10]])
    s.thr = float(np.clip(6 * 1.4826 * noise, 20, 40))
    s.flicker = np.mean([s.foreground(f) for f in stack], axis=0)
    w, h = s.size
    def mask(polygons: list) -> np.ndarray:
        pts = [(np.array(p) * [w - 1, h - 1]).astype(np.int32) for p in polygons]
        return cv2.fillPoly(np.zeros((h, w), np.uint8), pts, 1).astype(bool)
    s.ground = mask([PLACES[s.name]["ground"]])
    quiet = PLACES[s.name]["quiet"]
    s.quiet = s.ground & mask(quiet) if quiet else s.ground


def learn_held(s: Scene) -> None:
    """Person height per image row, and walkers, from the held-out part."""
    w, h = s.size
    per_frame = [s.blobs(f, i) for i, f in enumerate(s.held)]
    ys, hs = np.array([(b.feet[1], b.box[3]) for bs in per_frame for b in bs
                       if 1.4 <= b.box[3] / b.box[2] <= 5 and b.box[3] >= 6]).T
    keep = np.ones(len(ys), bool)
    for _ in range(6):  # a robust line: refit on the blobs within 20 % of the last fit
        slope, a = np.polyfit(ys[keep], hs[keep], 1)
        keep = np.abs(hs - (a + slope * ys)) < 0.2 * (a + slope * ys)
    s.height = (float(a), float(slope))

    def person(b: Blob, others: list[Blob]) -> bool:  # person-sized, whole, alone, not flicker
        x, y, bw, bh = b.box
        m = 0.12 * bh
        return (0.8 <= bh / s.person_h(b.feet[1]) <= 1.25 and 0.2 <= bw / bh <= 0.75
                and 2 <= x <= w - 2 - bw and 2 <= y <= h - 2 - bh
                and (s.flicker[y:y + bh, x:x + bw][b.mask] > 0.4).mean() < 0.05
                and not any(o is not b and o.box[0] < x + bw + m and o.box[0] + o.box[2] > x - m
                            and o.box[1] < y + bh + m and o.box[1] + o.box[3] > y - m
                            for o in others))
    tracks: list[list[Blob]] = []
    active: list[list[Blob]] = []  # a track may skip up to 3 frames (merged with another walker)
    for i, bs in enumerate(per_frame):
        if i and s.held_src[i][0] != s.held_src[i - 1][0]:
            tracks, active = tracks + active, []
        ps, used = [b for b in bs if person(b, bs)], set()
        for tr in active:
            last, gap = tr[-1], i - tr[-1].index
            d, j = min(((np.hypot(p.feet[0] - last.feet[0], p.feet[1] - last.feet[1]), j)
                        for j, p in enumerate(ps) if j not in used), default=(np.inf, -1))
            if gap <= 3 and d < (0.2 * gap + 0.1) * last.box[3] + 1 \
                    and 0.8 < ps[j].box[3] / last.box[3] < 1.25:
                used.add(j)
                tr.append(ps[j])
        tracks += [tr for tr in active if i - tr[-1].index > 3]
        active = [tr for tr in active if i - tr[-1].index <= 3]
        active += [[p] for j, p in enumerate(ps) if j not in used]
    walkers = [wk for wk in (make_walker(s, tr) for tr in tracks + active if len(tr) >= 12) if wk]
    if not walkers:
        raise KitError(f"{s.name}: no walker could be followed in the held-out footage")
    s.speed = float(np.median([wk.speed for wk in walkers]))
    s.walkers = [wk for wk in walkers if 0.5 * s.speed <= wk.speed <= 2 * s.speed]


def learn_usage(s: Scene) -> None:
    """From the train part: occupancy by person-sized blobs, the same for moving pixels, and
    per-cell histograms of optical-flow directions (Farneback on frames about 192 px wide)."""
    w, h = s.size
    f, s.cell = min(1.0, 192 / w), max(4, round(w / 24))
    s.hist = np.zeros((-(-h // s.cell), -(-w // s.cell), 8))
    occ, walk, n = np.zeros((h, w)), np.zeros((h, w)), 0
    for _, clip in s.train:
        small = [cv2.resize(gray(x), None, fx=f, fy=f, interpolation=cv2.INTER_AREA) for x in clip]
        for t in range(0, len(clip) - 1, 2):
            _, lab, stats, _ = cv2.connectedComponentsWithStats(s.foreground(clip[t + 1]))
            ph = np.array([s.person_h(y) for y in stats[:, 1] + stats[:, 3]])
            people = (stats[:, 3] >= 0.5 * ph) & (stats[:, 4] >= 0.05 * ph ** 2)
            people[0] = False
            flow = cv2.calcOpticalFlowFarneback(small[t], small[t + 1], None,
                                                .5, 3, 9, 3, 5, 1.1, 0)
            flow = cv2.resize(flow / f, (w, h))
            moving = (np.hypot(flow[..., 0], flow[..., 1]) > w / 900) & people[lab]
            occ, walk, n = occ + people[lab], walk + moving, n + 1
            ys, xs = np.nonzero(moving)
            b = np.round(np.arctan2(flow[ys, xs, 1], flow[ys, xs, 0]) / (np.pi / 4)).astype(int) % 8
            np.add.at(s.hist, (ys // s.cell, xs // s.cell, b), 1)
    s.occ, s.walk = (occ / n).astype(np.float32), (walk / n).astype(np.float32)


def make_walker(s: Scene, tr: list[Blob]) -> Walker | None:
    """A walker from a track; None when its height is unsteady or it is partly hidden."""
    t, hs = np.array([b.index for b in tr], float), np.array([b.box[3] for b in tr], float)
    if np.std(hs) > 0.12 * np.mean(hs):
        return None
    fx, fy = (np.polyfit(t, [b.feet[k] for b in tr], 1) for k in (0, 1))
    frames = [cutout(s, b, (np.polyval(fx, b.index), np.polyval(fy, b.index))) for b in tr]
    spread = [np.ptp(np.nonzero(b.mask[int(0.8 * b.box[3]):])[1]) / b.box[3]
              + (b.box[3] < 0.95 * np.median(hs)) for b in tr]  # feet apart, or looks shorter
    stand = frames[int(np.argmin(spread))]
    if (stand.alpha.max(1) > 0.05)[3:-3].mean() < 0.9:  # rows missing: behind a sign, or missed
        return None
    v = np.array([fx[0], fy[0]])
    return Walker(frames, stand, v / np.hypot(*v), float(np.hypot(*v) / np.median(hs)))


def cutout(s: Scene, b: Blob, feet: tuple[float, float]) -> Sprite:
    """The blob's pixels; alpha = its filled mask less the ground and cast shadow at the feet,
    eroded 1 px and feathered."""
    x, y, w, h = b.box
    x0, y0 = max(0, x - 2), max(0, y - 2)
    x1, y1 = min(s.size[0], x + w + 2), min(s.size[1], y + h + 2)
    mask = np.zeros((y1 - y0, x1 - x0), np.uint8)
    mask[y - y0:y - y0 + h, x - x0:x - x0 + w] = b.mask
    frame = s.held[b.index][y0:y1, x0:x1]
    fg, bg = gray(frame).astype(np.float32), s.bg[y0:y1, x0:x1].astype(np.float32)
    knees = y - y0 + int(0.75 * h)
    if s.color:  # drop the faint halo; below the knees, what has the background's chromaticity
        strong = (np.abs(fg - bg) > s.thr).astype(np.uint8)
        mask &= cv2.morphologyEx(strong, cv2.MORPH_CLOSE, np.ones((5, 3), np.uint8))
        f, g = frame.astype(np.float32) + 1, s.bg_bgr[y0:y1, x0:x1].astype(np.float32) + 1
        ratio = f.sum(2) / g.sum(2)
        chroma = np.abs(f / f.sum(2, keepdims=True) - g / g.sum(2, keepdims=True)).sum(2)
        shadow = (ratio > 0.3) & (ratio < 1.1) & (chroma < 0.05)
        shadow[:knees] = False
        mask[shadow] = 0
    ground = (np.abs(fg - bg) < 0.6 * s.thr) | ((fg > 0.7 * bg) & (fg < bg))
    ground[:y - y0 + int(0.8 * h)] = False  # at the feet: peel off ground reached from outside
    lab = cv2.connectedComponents(((mask == 0) | ground).astype(np.uint8))[1]
    mask[np.isin(lab, np.unique(lab[mask == 0])) & (mask > 0)] = 0
    mask = cv2.morphologyEx(mask, cv2.MORPH_OPEN, np.ones((2, 2), np.uint8))
    cs = cv2.findContours(mask, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_NONE)[0]
    cs = [c for c in cs if cv2.contourArea(c) >= 0.2 * max(cv2.contourArea(c) for c in cs)]
    mask = cv2.drawContours(np.zeros_like(mask), cs, -1, 1, -1)  # holes filled, specks dropped
    if h > 16:
        mask = cv2.erode(mask, np.ones((3, 3), np.uint8))
    alpha = cv2.GaussianBlur(mask.astype(np.float32), (0, 0), 0.8 if h > 24 else 0.6)
    src = {"clip": s.held_src[b.index][0], "frame": s.held_src[b.index][1], "box": list(b.box)}
    return Sprite(frame.astype(np.float32), alpha, (feet[0] - x0, feet[1] - y0), float(h), src)


def bag(sp: Sprite) -> Sprite:
    """A bag-sized object: the torso (jacket, backpack) of a cutout, in an elliptic mask."""
    ax, ay, h = *sp.anchor, sp.height
    y0, y1 = int(ay - 0.75 * h), int(ay - 0.5 * h)
    cols = np.nonzero(sp.alpha[y0:y1].max(0) > 0.5)[0]
    cx = cols.mean() if len(cols) else ax
    x0, x1 = int(max(0, cx - 0.16 * h)), int(cx + 0.16 * h) + 1
    bw, bh = x1 - x0, y1 - y0
    box = ((bw / 2 - .5, bh / 2 - .5), (bw - 1, bh - 1), 0)
    ell = cv2.ellipse(np.zeros((bh, bw), np.float32), box, 1, -1)
    alpha = sp.alpha[y0:y1, x0:x1] * cv2.GaussianBlur(ell, (0, 0), 0.6)
    return Sprite(sp.bgr[y0:y1, x0:x1], alpha, (bw / 2, bh), float(bh), dict(sp.src, part="torso"))


def affine(to: np.ndarray, pivot: tuple[float, float], scale: float = 1.0, angle: float = 0.0,
           mirror: bool = False) -> np.ndarray:
    """3x3 map: mirror and rotate (degrees; + turns the head towards +x) about `pivot`, scale,
    and put `pivot` at `to`."""
    c, si = np.cos(np.radians(angle)) * scale, np.sin(np.radians(angle)) * scale
    f = -1.0 if mirror else 1.0
    m = np.array([[c * f, -si, 0], [si * f, c, 0], [0, 0, 1]])
    m[:2, 2] = np.asarray(to, float) - m[:2, :2] @ np.asarray(pivot, float)
    return m


def render(frame: np.ndarray, sp: Sprite, m: np.ndarray) -> tuple[int, int, int, int] | None:
    """Composite `sp`, mapped by `m`, onto `frame` in place; the box it covers (alpha > 0.5)."""
    h, w = sp.alpha.shape
    corners = m[:2, :2] @ np.array([[0, w, 0, w], [0, 0, h, h]]) + m[:2, 2:]
    x0, y0 = max(0, int(corners[0].min()) - 1), max(0, int(corners[1].min()) - 1)
    x1 = min(frame.shape[1], int(corners[0].max()) + 2)
    y1 = min(frame.shape[0], int(corners[1].max()) + 2)
    if x1 <= x0 or y1 <= y0:
        return None
    mm = (np.array([[1, 0, -x0], [0, 1, -y0], [0, 0, 1]]) @ m)[:2]
    a = cv2.warpAffine(sp.alpha, mm, (x1 - x0, y1 - y0))[..., None]
    roi = frame[y0:y1, x0:x1]
    px = cv2.warpAffine(sp.bgr, mm, (x1 - x0, y1 - y0))
    roi[:] = np.clip(roi * (1 - a) + px * a + 0.5, 0, 255)
    ys, xs = np.nonzero(a[..., 0] > 0.5)
    if not len(xs):
        return None
    return x0 + int(xs.min()), y0 + int(ys.min()), x0 + int(xs.max()) + 1, y0 + int(ys.max()) + 1


def pose(s: Scene, wk: Walker, p: np.ndarray, d: np.ndarray, k: int | None = None,
         bend: float = 0.0, fall: float = 0.0) -> list[Item]:
    """A walker with feet at p going along d, scaled to the row: walking frame k (None:
    standing), the upper body bent forward `bend` degrees about the hips, or the whole body
    fallen forward `fall` degrees about the feet. Mirrored to face the way it goes."""
    sp = wk.stand if k is None else wk.frames[k % len(wk.frames)]
    own = 1.0 if wk.heading[0] >= 0 else -1.0
    facing = (1.0 if d[0] >= 0 else -1.0) if abs(d[0]) > 0.2 else own
    m = affine(p, sp.anchor, s.person_h(p[1]) / sp.height, 0, facing != own)
    if fall:
        m = affine(p, p, 1, fall * facing) @ m
    if not bend:
        return [(sp, m, p[1], True)]
    hip, rows = int(sp.anchor[1] - 0.5 * sp.height), np.arange(len(sp.alpha))[:, None]
    lower = Sprite(sp.bgr, sp.alpha * (rows >= hip), sp.anchor, sp.height, sp.src)
    upper = Sprite(sp.bgr, sp.alpha * (rows <= hip + 1), sp.anchor, sp.height, sp.src)
    pivot = (m @ [sp.anchor[0], hip, 1])[:2]
    return [(lower, m, p[1], True), (upper, affine(pivot, pivot, 1, bend * facing) @ m, p[1], True)]


def trajectory(s: Scene, p: np.ndarray, d: np.ndarray, n: int) -> list[np.ndarray]:
    """n feet positions after p along unit d at the scene's walking speed (perspective-aware)."""
    out, p = [], np.asarray(p, float)
    for _ in range(n):
        p = p + d * s.speed * s.person_h(p[1])
        out.append(p)
    return out


def candidates(s: Scene, rng: np.random.Generator, n: int = 400, region: np.ndarray | None = None
               ) -> tuple[np.ndarray, np.ndarray]:
    """Random feet points in `region` (default: the ground) with a person fully in the frame, not
    near places used before; and over a person-sized box standing there, the mean occupancy,
    background edge strength and moving occupancy."""
    ys, xs = np.nonzero(s.ground if region is None else region)
    pts = np.stack([xs, ys], 1)[rng.choice(len(xs), min(len(xs), 20 * n), replace=False)]
    pts = np.array([p for p in pts.astype(float)
                    if all(np.hypot(*(p - u)) > 1.5 * s.person_h(p[1]) for u in s.used)
                    and s.inside(p - [0, s.person_h(p[1])], 0.25 * s.person_h(p[1]))][:n])
    edges = np.hypot(cv2.Sobel(s.bg, cv2.CV_32F, 1, 0), cv2.Sobel(s.bg, cv2.CV_32F, 0, 1))
    sums = [cv2.integral(m) for m in (s.occ, edges, s.walk)]
    stats = []
    for x, y in pts:
        h = s.person_h(y)
        x0, x1 = int(x - 0.2 * h), int(x + 0.2 * h) + 1
        y0, y1 = int(y - h), int(y) + 1
        stats.append([(i[y1, x1] - i[y0, x1] - i[y1, x0] + i[y0, x0]) / ((x1 - x0) * (y1 - y0))
                      for i in sums])
    return pts, np.array(stats)


def choose(rng: np.random.Generator, scores: np.ndarray, best: int = 8) -> int:
    """Index of one of the `best` lowest scores, at random."""
    return int(rng.choice(np.argsort(scores)[:best]))


def quiet_spot(s: Scene, rng: np.random.Generator) -> np.ndarray:
    """Feet point in the quiet region where nobody walks or stands in train, on plain background."""
    pts, st = candidates(s, rng, region=s.quiet)
    rank = np.argsort(np.argsort(st, axis=0), axis=0) / len(st)
    i = choose(rng, rank[:, 0] + 0.5 * rank[:, 1] + 10 * (st[:, 0] > np.percentile(st[:, 0], 20)))
    s.used.append(pts[i])
    return pts[i]


def path(s: Scene, rng: np.random.Generator, back: int, fwd: int, usual: bool
         ) -> tuple[np.ndarray, np.ndarray, float, list[np.ndarray], list[np.ndarray]]:
    """A walk through a place where people walk: `back` frames to a centre point, `fwd` on.
    usual=True: the way train footage moves most there (the first 2 s either side on the ground
    or out of the frame); usual=False: the way it moves least there (neighbouring directions
    weigh half), cut to where it stays on the ground, at least 4 s. Returns the centre, the unit
    direction, the share of train flow within 22.5 deg of it along the walk, and the feet
    before and after the centre."""
    pts, st = candidates(s, rng, 150)
    counts = s.hist.sum(2)
    share = s.hist / np.maximum(counts, 1)[..., None]
    near = share + 0.5 * (np.roll(share, 1, 2) + np.roll(share, -1, 2))
    enough = counts >= 0.1 * np.percentile(counts[counts > 0], 75)
    found = []
    for c in pts[st[:, 2] >= np.percentile(st[:, 2], 70)]:  # where people walk most
        for k in range(8):
            d = np.array([np.cos(k * np.pi / 4), np.sin(k * np.pi / 4)])
            legs = [trajectory(s, c, -d, back)[::-1], trajectory(s, c, d, fwd)]
            ok = [[s.on_ground(p) or (usual and not s.inside(p)) for p in leg] for leg in legs]
            if usual and not (all(ok[0][-2 * FPS:]) and all(ok[1][:2 * FPS])):
                continue
            if not usual:
                cut = [ok[0][::-1].index(False) if False in ok[0] else back,
                       ok[1].index(False) if False in ok[1] else fwd]
                legs = [legs[0][back - cut[0]:], legs[1][:cut[1]]]
                if sum(cut) < 4 * FPS:
                    continue
            span = [*legs[0][-2 * FPS:], c, *legs[1][:2 * FPS]] if usual else \
                [*legs[0], c, *legs[1]]
            cells = {(int(p[1]) // s.cell, int(p[0]) // s.cell) for p in span if s.inside(p)}
            known = [rc for rc in cells if enough[rc]]  # where train footage shows enough motion
            if known and len(known) >= 0.7 * len(cells):
                score = float(np.mean([near[rc][k] for rc in known]))
                seen = float(np.mean([share[rc][k] for rc in known]))
                found.append((-score if usual else score, seen, c, d, legs))
    if not found:
        raise KitError(f"{s.name}: no place found for a {'usual' if usual else 'wrong-way'} walk")
    _, seen, c, d, legs = found[choose(rng, np.array([f[0] for f in found]), 6)]
    s.used.append(c)
    return c, d, seen, legs[0], legs[1]


def pick_walker(s: Scene, rng: np.random.Generator, d: np.ndarray | None = None,
                p: np.ndarray | None = None) -> Walker:
    """One of the 3 walkers (not yet given to this type's clips) that best suit a walk along d
    (the way they walked in the footage, mirroring allowed) to feet point p: standing out from
    the background there and not enlarged much."""
    def score(w: Walker) -> float:
        sc = 0.0 if d is None else -(abs(w.heading[0] * d[0]) + w.heading[1] * d[1])
        if p is not None:
            h = s.person_h(p[1])
            patch = s.bg[int(p[1] - h):int(p[1]) + 1, int(p[0] - 0.2 * h):int(p[0] + 0.2 * h) + 1]
            body = gray(w.stand.bgr)[w.stand.alpha > 0.5]
            sc -= float(np.mean(np.abs(body - patch.mean()))) / 50
            sc += 0.3 * max(0.0, np.log(h / w.stand.height))
        return sc
    pool = [w for w in s.walkers if id(w) not in s.taken] or s.walkers
    wk = pool[choose(rng, np.array([score(w) for w in pool]), 3)]
    s.taken.append(id(wk))
    return wk


def pick_bag(s: Scene, rng: np.random.Generator, where: list[np.ndarray]) -> Sprite:
    """One of the 3 bags (walkers' torsos) that differ most from the background at `where`."""
    bags = [bag(w.stand) for w in s.walkers]
    tone = np.array([np.average(gray(b.bgr), weights=b.alpha + 1e-6) for b in bags])
    ground = np.mean([s.bg[min(max(int(y), 0), s.size[1] - 1), min(max(int(x), 0), s.size[0] - 1)]
                      for x, y in where])
    return bags[choose(rng, -np.abs(tone - ground), 3)]


def provenance(wk: Walker) -> dict:
    """Where a walker's cutouts come from."""
    return {"clip": wk.frames[0].src["clip"], "standing_frame": wk.stand.src["frame"],
            "frames": [wk.frames[0].src["frame"], wk.frames[-1].src["frame"]]}


@dataclass
class Plan:
    """One test clip: per frame a label and the things to composite, or an effect on each frame."""
    labels: list[int]
    items: list[list[Item]] = field(default_factory=list)
    params: dict = field(default_factory=dict)
    effect: Callable[[int, int, np.ndarray], np.ndarray] | None = None  # (i, held index, frame)


def secs(rng: np.random.Generator, lo: float, hi: float) -> int:
    """A random duration in frames."""
    return round(rng.uniform(lo, hi) * FPS)


def timeline(*parts: tuple[list[list[Item]], int]) -> tuple[list[list[Item]], list[int]]:
    """Concatenate (items per frame, label) parts into items and labels."""
    return [f for items, _ in parts for f in items], [lab for items, lab in parts for _ in items]


def tail(rng: np.random.Generator, used: int, lo: float = 3, hi: float = 5) -> list[list[Item]]:
    """lo-hi s with nothing inserted; longer when needed to make the clip 15 s."""
    return [[]] * max(secs(rng, lo, hi), 15 * FPS - used)


def walk_through(s: Scene, rng: np.random.Generator, pre: int, post: int
                 ) -> tuple[Walker, np.ndarray, np.ndarray, list, list, dict]:
    """A usual walk: a walker, the point c it reaches after `pre` frames, its direction d, its feet
    `pre` frames before c and `post` after (None from where it leaves the ground inside the
    frame: hidden), and the parameters to record."""
    c, d, share, before, after = path(s, rng, pre, post, usual=True)
    def hide(leg: list) -> list:
        gone = next((i for i, p in enumerate(leg) if s.inside(p) and not s.on_ground(p)), len(leg))
        return leg[:gone] + [None] * (len(leg) - gone)
    wk = pick_walker(s, rng, d, c)
    return wk, c, d, hide(before[::-1])[::-1], hide(after), {
        "point": c.round(1).tolist(), "direction": d.round(2).tolist(),
        "train_flow_share": round(share, 3), "speed_heights_per_s": round(s.speed * FPS, 2),
        "walker": provenance(wk)}


def walking(s: Scene, wk: Walker, feet: list, d: np.ndarray, k0: int = 0) -> list[list[Item]]:
    """The walker walking through `feet` (None: not seen), gait frames from k0 on."""
    return [pose(s, wk, p, d, k0 + k) if p is not None else [] for k, p in enumerate(feet)]


def plan_standing(s: Scene, rng: np.random.Generator) -> Plan:
    """A person stands 8-15 s (swaying +-1 px) in the least used place of the quiet ground."""
    p, pre, span = quiet_spot(s, rng), secs(rng, 3, 5), secs(rng, 8, 15)
    wk, d = pick_walker(s, rng, None, p), np.array([rng.choice([-1.0, 1.0]), 0])
    sway = smooth_noise(rng, 2 * span, 6).reshape(span, 2) * [1.0, 0.3]
    items, labels = timeline(([[]] * pre, 0), ([pose(s, wk, p + j, d) for j in sway], 1),
                             (tail(rng, pre + span), 0))
    occupancy = round(float(s.occ[int(p[1]), int(p[0])]), 4)
    return Plan(labels, items, {"point": p.round(1).tolist(), "train_occupancy": occupancy,
                                "person": wk.stand.src})


def plan_loitering(s: Scene, rng: np.random.Generator) -> Plan:
    """A walker on a usual path stops 15-20 s where people walk by, then walks on."""
    pre, span, post = secs(rng, 3, 5), secs(rng, 15, 20), secs(rng, 3, 5)
    wk, c, d, before, after, params = walk_through(s, rng, pre, post)
    sway = smooth_noise(rng, 2 * span, 6).reshape(span, 2) * [1.0, 0.3]
    stay = [pose(s, wk, c + j, d) for j in sway]
    items, labels = timeline((walking(s, wk, before, d), 0), (stay, 1),
                             (walking(s, wk, after, d, pre), 0))
    return Plan(labels, items, params)


def plan_object_left(s: Scene, rng: np.random.Generator) -> Plan:
    """A walker on a usual path carries a bag, drops it and walks on; the bag stays 10-15 s."""
    pre, span, post = secs(rng, 3, 5), secs(rng, 10, 15), secs(rng, 3, 5)
    wk, c, d, before, after, params = walk_through(s, rng, pre, span + post)
    away = walking(s, wk, after, d, pre)
    items, labels = timeline((walking(s, wk, before, d), 0), (away[:span], 1), (away[span:], 0))
    items[pre:] = [[(sp, m, y, False) for sp, m, y, _ in its] for its in items[pre:]]  # box the bag
    h = s.person_h(c[1])
    side = np.array([0.12 * h * (1 if d[0] >= 0 else -1), 0])
    obj = pick_bag(s, rng, [c + side - [0, 0.1 * h]])
    for i, feet in enumerate([*before, *[c] * span]):
        if feet is not None:  # carried at hand height; falls to the ground in 3 frames
            up = 0.3 * h * min(1.0, max(0.0, (pre + 2 - i) / 3))
            p = feet + side - [0, up]
            m = affine(p, obj.anchor, 0.22 * h / obj.height)
            items[i] = items[i] + [(obj, m, p[1] + up + 0.5, True)]
    return Plan(labels, items, dict(params, object=obj.src, left_at=(c + side).round(1).tolist()))


def plan_thrown(s: Scene, rng: np.random.Generator) -> Plan:
    """A small object flies 1-1.8 s on a ballistic arc from hand height to the ground 3-5 person
    heights away, rests there 0.5 s (labelled with the flight) and is gone."""
    for p0 in candidates(s, rng, 200)[0]:
        h0 = s.person_h(p0[1])
        p1 = p0 + [rng.choice([-1, 1]) * rng.uniform(3, 5) * h0, rng.uniform(-0.5, 0.5) * h0]
        if s.on_ground(p1) and s.inside(p1, 0.5 * h0) and s.inside(p0, 0.5 * h0):
            break
    s.used.append(p0)
    pre, flight, top = secs(rng, 5, 8), secs(rng, 1, 1.8), rng.uniform(1.0, 1.5) * h0
    spin, arc = rng.uniform(-720, 720), []
    for i in range(flight + FPS // 2):
        t = min(1.0, i / flight)
        g = p0 + t * (p1 - p0)  # the ground point under the object
        arc.append((g, g - [0, (1 - t) * 0.6 * h0 + 4 * top * t * (1 - t)], t))
    obj = pick_bag(s, rng, [p for _, p, _ in arc])
    fly = [[(obj, affine(p, obj.anchor, 0.2 * s.person_h(g[1]) / obj.height, spin * t), g[1], True)]
           for g, p, t in arc]
    items, labels = timeline(([[]] * pre, 0), (fly, 1), (tail(rng, pre + len(fly), 6, 9), 0))
    return Plan(labels, items, {"from": p0.round(1).tolist(), "to": p1.round(1).tolist(),
                                "flight_frames": flight, "apex_px": round(top + 0.6 * h0, 1),
                                "object": obj.src})


def plan_wrong_way(s: Scene, rng: np.random.Generator) -> Plan:
    """A walker crosses a busy place at the usual speed, the way train footage moves least there."""
    c, d, share, before, after = path(s, rng, 5 * FPS, 5 * FPS, usual=False)
    wk, walk, pre = pick_walker(s, rng, d, c), [*before, c, *after], secs(rng, 3, 5)
    items, labels = timeline(([[]] * pre, 0), (walking(s, wk, walk, d), 1),
                             (tail(rng, pre + len(walk)), 0))
    return Plan(labels, items, {
        "from": walk[0].round(1).tolist(), "to": walk[-1].round(1).tolist(),
        "direction": d.round(2).tolist(), "train_flow_share": round(share, 4),
        "speed_heights_per_s": round(s.speed * FPS, 2), "walker": provenance(wk)})


def plan_lying(s: Scene, rng: np.random.Generator) -> Plan:
    """A walker on a usual path falls forward (1 s) and lies 8-15 s; then the clip goes on
    without them."""
    pre, fall, lie = secs(rng, 3, 5), FPS, secs(rng, 8, 15)
    wk, c, d, before, _, params = walk_through(s, rng, pre, 0)
    down = [pose(s, wk, c, d, fall=90 * min(1.0, (i + 1) / fall) ** 2) for i in range(fall + lie)]
    items, labels = timeline((walking(s, wk, before, d), 0), (down, 1),
                             (tail(rng, pre + len(down)), 0))
    return Plan(labels, items, dict(params, fall_frames=fall))


def plan_bending(s: Scene, rng: np.random.Generator) -> Plan:
    """A walker on a usual path stops, bends forward over 1 s, stays bent 2-3 s, straightens and
    walks on; labelled from the first tilt until upright again."""
    pre, tilt, hold, post = secs(rng, 5, 7), FPS, secs(rng, 2, 3), secs(rng, 6, 9)
    angle = rng.uniform(55, 75)
    wk, c, d, before, after, params = walk_through(s, rng, pre, post)
    ramp = [angle * (0.5 - 0.5 * np.cos(np.pi * min(1.0, i / tilt, (2 * tilt + hold - i) / tilt)))
            for i in range(1, 2 * tilt + hold + 1)]
    bent = [pose(s, wk, c, d, bend=a) for a in ramp]
    items, labels = timeline((walking(s, wk, before, d), 0), (bent, 1),
                             (walking(s, wk, after, d, pre), 0))
    return Plan(labels, items, dict(params, bend_degrees=round(angle, 1), hold_frames=hold))


def plan_crowd(s: Scene, rng: np.random.Generator) -> Plan:
    """More walkers: onto each frame, the foreground of the held-out frame 3-6 s later."""
    lag = secs(rng, 3, 6)
    def effect(i: int, j: int, frame: np.ndarray) -> np.ndarray:
        other = s.held[(j + lag) % len(s.held)]
        a = cv2.dilate(s.foreground(other), np.ones((3, 3), np.uint8)).astype(np.float32)
        a = cv2.GaussianBlur(a, (0, 0), 0.8)[..., None]
        return np.clip(frame * (1 - a) + other * a + 0.5, 0, 255).astype(np.uint8)
    return Plan([0] * secs(rng, 18, 24), params={"walkers_from_frames_later": lag}, effect=effect)


def plan_shake(s: Scene, rng: np.random.Generator) -> Plan:
    """Camera shake: each frame shifted by a smooth random offset, up to 0.5-1.2 % of the width."""
    n, amp = secs(rng, 18, 24), s.size[0] * rng.uniform(0.005, 0.012)
    off = smooth_noise(rng, 2 * n, 1.5).reshape(n, 2) * [amp, 0.6 * amp]
    def effect(i: int, j: int, frame: np.ndarray) -> np.ndarray:
        return cv2.warpAffine(frame, np.float32([[1, 0, off[i, 0]], [0, 1, off[i, 1]]]), s.size,
                              borderMode=cv2.BORDER_REPLICATE)
    return Plan([0] * n, params={"max_offset_px": round(float(np.abs(off).max()), 2)},
                effect=effect)


def plan_lighting(s: Scene, rng: np.random.Generator) -> Plan:
    """A slow global drift: gain 0.75 -> 1.15 -> 0.75 over the clip, and an offset of +-8 levels."""
    n, phase = secs(rng, 18, 24), rng.uniform(0, 2 * np.pi)
    def effect(i: int, j: int, frame: np.ndarray) -> np.ndarray:
        t = 2 * np.pi * i / (n - 1)
        out = frame * (0.95 - 0.2 * np.cos(t)) + 8 * np.sin(t + phase) + 0.5
        return np.clip(out, 0, 255).astype(np.uint8)
    return Plan([0] * n, params={"gain": "0.75 -> 1.15 -> 0.75", "offset_phase": round(phase, 2)},
                effect=effect)


PLANNERS = {"standing": plan_standing, "loitering": plan_loitering, "object_left": plan_object_left,
            "thrown": plan_thrown, "wrong_way": plan_wrong_way, "lying": plan_lying,
            "bending": plan_bending,
            "crowd": plan_crowd, "shake": plan_shake, "lighting": plan_lighting}  # all labels 0


def keep_nearer(s: Scene, frame: np.ndarray, orig: np.ndarray, box: tuple[int, int, int, int],
                depth: float, lab: np.ndarray, stats: np.ndarray) -> None:
    """Over a thing inserted with its feet at row `depth`, put back the real walkers (person-sized
    foreground components of the original frame) whose feet are nearer the camera."""
    x0, y0, x1, y1 = box
    bottom = stats[:, 1] + stats[:, 3]
    near = [i for i in np.unique(lab[y0:y1, x0:x1])
            if i and bottom[i] > depth + 0.05 * s.person_h(depth)
            and stats[i, 3] >= 0.5 * s.person_h(bottom[i])]
    if near:
        a = np.isin(lab[y0:y1, x0:x1], near).astype(np.float32)
        a = cv2.GaussianBlur(a, (0, 0), 0.7)[..., None]
        roi = frame[y0:y1, x0:x1]
        roi[:] = np.clip(roi * (1 - a) + orig[y0:y1, x0:x1] * a + 0.5, 0, 255)


def compose(s: Scene, plan: Plan, start: int) -> tuple[list[np.ndarray], list[list[int] | None]]:
    """The clip's frames (held-out frames from `start` on, looping forward) and per frame the box
    of what was inserted."""
    frames, boxes = [], []
    for i in range(len(plan.labels)):
        j = (start + i) % len(s.held)
        orig = s.held[j]
        if plan.effect is not None:
            frames.append(plan.effect(i, j, orig))
            boxes.append(None)
            continue
        frame, got, comps = orig.copy(), [], None
        for sp, m, depth, boxed in sorted(plan.items[i], key=lambda it: it[2]):  # far to near
            if (b := render(frame, sp, m)) is not None:
                comps = comps or cv2.connectedComponentsWithStats(s.foreground(orig))[1:3]
                keep_nearer(s, frame, orig, b, depth, *comps)
                got += [b] if boxed else []
        frames.append(frame)
        boxes.append([*np.min(got, 0)[:2].tolist(), *np.max(got, 0)[2:].tolist()] if got else None)
    return frames, boxes


def source_ranges(s: Scene, start: int, n: int) -> list[list]:
    """The held-out frames a clip uses, as [source clip, first frame, last frame] runs in order."""
    runs: list[list] = []
    for i in range(n):
        clip, f = s.held_src[(start + i) % len(s.held)]
        if runs and runs[-1][0] == clip and runs[-1][2] + 1 == f:
            runs[-1][2] = f
        else:
            runs.append([clip, f, f])
    return runs


def preview(path: Path, frames: list[np.ndarray], labels: list[int], boxes: list) -> None:
    """A contact sheet of 6 frames (before, in, after the anomalous span), inserted things boxed."""
    n, on = len(frames), np.nonzero(labels)[0]
    if len(on):
        a, b = on[0], on[-1]
        picks = [a // 2, a + 2, a + (b - a) // 3, a + 2 * (b - a) // 3, b, min(n - 1, (b + n) // 2)]
    else:
        picks = np.linspace(0, n - 1, 6).astype(int)
    w = frames[0].shape[1]
    z = 0.5 if w > 600 else 2.0 if w < 300 else 1.0
    tiles = []
    for i in picks:
        t = cv2.resize(frames[i], None, fx=z, fy=z,
                       interpolation=cv2.INTER_AREA if z < 1 else cv2.INTER_NEAREST)
        if boxes[i]:
            x0, y0, x1, y1 = (round(v * z) for v in boxes[i])
            cv2.rectangle(t, (x0 - 2, y0 - 2), (x1 + 1, y1 + 1), (0, 0, 255), 1)
        for color, width in (((0, 0, 0), 3), ((255, 255, 255), 1)):
            cv2.putText(t, f"frame {i}  label {labels[i]}", (5, 16), cv2.FONT_HERSHEY_SIMPLEX, 0.45,
                        color, width, cv2.LINE_AA)
        tiles.append(t)
    sheet = np.vstack([np.hstack(tiles[:3]), np.hstack(tiles[3:])])
    cv2.imwrite(str(path), sheet, [cv2.IMWRITE_JPEG_QUALITY, 90])


def inputs(name: str, data: Path, vtest: Path) -> list[Path]:
    """The video files a scene is made from; KitError when one is missing."""
    paths = [vtest] if name == "vtest" else [data / f"ucsd_{name}" / "train" / f"Train{i:03d}.mp4"
                                             for i in range(1, UCSD_SPLIT[name][0] + 1)]
    missing = [p for p in paths if not p.is_file()]
    if missing:
        raise KitError(f"{missing[0]}: not found (needed for scene {name}; see --data, --vtest)")
    return paths


def load_scene(name: str, paths: list[Path]) -> Scene:
    """Read a scene's footage and split it into its train and held-out parts."""
    if name == "vtest":
        fr = read_video(paths[0])
        if len(fr) < 795:
            raise KitError(f"{paths[0]}: {len(fr)} frames, expected 795")
        cuts = ((0, 177), (177, 354), (354, 530))
        train = [(f"vtest_{a:03d}-{b - 1:03d}", fr[a:b]) for a, b in cuts]
        return Scene(name, train, fr[530:795], [("vtest.avi", i) for i in range(530, 795)])
    clips = [(p.stem, read_video(p)) for p in paths]
    held = clips[UCSD_SPLIT[name][1]:]
    return Scene(name, clips[:UCSD_SPLIT[name][1]], [f for _, fr in held for f in fr],
                 [(stem, i) for stem, fr in held for i in range(len(fr))])


def build_scene(s: Scene, out: Path, seed: int) -> None:
    """Learn the scene, then write its train clips, test clips, labels, records and previews."""
    rng = np.random.default_rng([seed, zlib.crc32(s.name.encode())])
    learn_background(s)
    learn_held(s)
    learn_usage(s)
    dst = out / s.name
    for sub in ("train", "test", "preview"):
        shutil.rmtree(dst / sub, ignore_errors=True)
        (dst / sub).mkdir(parents=True)
    for stem, frames in s.train:
        write_video(dst / "train" / f"{stem}.mp4", frames)
        print(f"{s.name}/train/{stem}.mp4: {len(frames)} frames (normal, for fit)", flush=True)
    labels, records = {}, {}
    for kind, planner in PLANNERS.items():
        s.used, s.taken = [], []  # the two clips of a type get different places and walkers
        for stem in (f"{kind}_1", f"{kind}_2"):
            plan = planner(s, rng)
            n, on = len(plan.labels), np.nonzero(plan.labels)[0]
            start = int(rng.integers(0, max(1, len(s.held) - n + 1)))  # loops only when needed
            frames, boxes = compose(s, plan, start)
            assert len(frames) == len(boxes) == n
            write_video(dst / "test" / f"{stem}.mp4", frames)
            preview(dst / "preview" / f"{stem}.jpg", frames, plan.labels, boxes)
            labels[stem] = plan.labels
            records[stem] = {
                "type": kind, "frames": n, "anomalous_frames": len(on),
                "anomaly_first": int(on[0]) if len(on) else None,
                "anomaly_last": int(on[-1]) if len(on) else None, "boxes": boxes,
                "source_frames": source_ranges(s, start, n), "params": plan.params}
            span = f"anomalous frames {on[0]}-{on[-1]} ({len(on)})" if len(on) else "all normal"
            print(f"{s.name}/test/{stem}.mp4: {kind}, {n} frames ({n / FPS:.1f} s), {span}",
                  flush=True)
    (dst / "labels.json").write_text(json.dumps(labels))
    (dst / "scenarios.json").write_text(json.dumps(records, indent=1))


class Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # one line, exit code 2
        self.exit(2, f"scenarios.py: {message} (see --help)\n")


def main(argv: list[str] | None = None) -> int:
    ap = Parser(description="Build a labelled scenario kit (a development aid) from real footage.")
    ap.add_argument("--out", type=Path, required=True, help="output folder, outside the repository")
    ap.add_argument("--scenes", default="vtest,ped2,ped1", help="comma-separated subset")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--data", type=Path, default=REPO.parent / "shared" / "data",
                    help="folder with ucsd_ped1/ and ucsd_ped2/ (default: ../shared/data from the "
                         "repository root)")
    ap.add_argument("--vtest", type=Path, default=VTEST, help=f"vtest.avi (default: {VTEST})")
    args = ap.parse_args(argv)
    try:
        names = [n.strip() for n in args.scenes.split(",") if n.strip()]
        if not names or any(n not in PLACES for n in names):
            raise KitError(f"--scenes {args.scenes!r}: choose from vtest, ped2, ped1")
        if shutil.which("ffmpeg") is None:
            raise KitError("ffmpeg not found on PATH")
        sources = {n: inputs(n, args.data, args.vtest) for n in names}
        out = args.out.resolve()
        if (REPO / ".git").exists() and (out == REPO or REPO in out.parents):
            raise KitError(f"{args.out}: inside the repository; the kit is derived from "
                           "research-only data and must stay outside it")
        try:
            out.mkdir(parents=True, exist_ok=True)
            (out / ".write-test").write_bytes(b"")
            (out / ".write-test").unlink()
        except OSError as exc:
            raise KitError(f"{args.out}: not writable ({exc.strerror or exc})") from None
        for n in names:
            build_scene(load_scene(n, sources[n]), out, args.seed)
    except KitError as exc:
        print(f"scenarios.py: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:
        print(f"scenarios.py: {exc.filename or ''}: {exc.strerror or exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
