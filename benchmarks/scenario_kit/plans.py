"""One plan per scenario type: what each test clip shows, frame by frame, and its labels."""

from __future__ import annotations

import cv2
import numpy as np

from .compose import (Item, Plan, affine, candidates, path, pick_bag, pick_walker, pose, provenance,
                      quiet_spot)
from .scene import FPS, Scene, Walker


def smooth_noise(rng: np.random.Generator, n: int, sigma: float) -> np.ndarray:
    """n samples of smooth random noise in [-1, 1] (Gaussian-filtered white noise)."""
    k = np.exp(-0.5 * (np.arange(-3 * sigma, 3 * sigma + 1) / sigma) ** 2)
    x = np.convolve(rng.normal(size=n + len(k) - 1), k, "valid")
    return x / np.abs(x).max()


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
