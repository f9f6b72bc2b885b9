"""Learning a scene from its footage: the split into train and held-out parts, background and
foreground, where people stand and walk and which way, person height per image row, and walkers
(people followed over held-out frames, cut out of them)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np

FPS = 10
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


def gray(frame: np.ndarray) -> np.ndarray:
    return cv2.cvtColor(np.clip(frame, 0, 255).astype(np.uint8), cv2.COLOR_BGR2GRAY)


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
