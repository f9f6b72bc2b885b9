"""Putting things into frames: sprites (walkers' cutouts, bags cut from their torsos), poses,
paths and places chosen from what the scene learnt, and rendering a plan onto held-out frames."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import cv2
import numpy as np

from .scene import FPS, KitError, Scene, Sprite, Walker, gray

Item = tuple[Sprite, np.ndarray, float, bool]  # sprite, 3x3 map to the frame, feet row, boxed


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
