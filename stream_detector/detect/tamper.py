"""Tamper and scene change, judged on the picture alone (independent of any model): a reference of
the scene learned live (its edge map, brightness, sharpness), one per model and picture class; a
picture that stays unlike every reference for `after` seconds is tampered until it matches again.
"""

from __future__ import annotations

from collections.abc import Hashable
from dataclasses import dataclass, field

import numpy as np

from stream_detector.detect.scene import SceneSample, similarity

# Structure match (edge-map correlation) on vtest.avi against its own 10 s reference: median 0.90,
# 5th percentile 0.83; the same street mirrored 0.16, shifted by 100 px 0.28, zoomed 0.23.
MATCH_LOW, MATCH_HIGH = 0.5, 0.7  # under: changed; over: the scene (hysteresis between)
DARK, BACK_FROM_DARK = 0.3, 0.4  # brightness against the reference's
BRIGHT, BACK_FROM_BRIGHT = 3.0, 2.5
BLUR, BACK_FROM_BLUR = 0.5, 0.65  # sharpness against the reference's


@dataclass(frozen=True)
class Verdict:
    tampered: bool
    difference: float  # 0 the learned scene .. 1 unrelated
    why: str


@dataclass
class _Reference:
    """The scene as one model and picture class see it: learned for `learn` seconds, then followed
    slowly while the picture is normal (light that changes over minutes, shadows that move)."""

    started: float
    samples: list[SceneSample] = field(default_factory=list)
    edges: np.ndarray | None = None
    brightness: float = 0.0
    sharpness: float = 0.0
    low: float = MATCH_LOW
    high: float = MATCH_HIGH
    typical: float = 1.0  # the match of the learning samples with the reference (median)

    @property
    def learned(self) -> bool:
        return self.edges is not None

    def finish(self) -> None:
        self.edges = np.mean([s.edges for s in self.samples], axis=0)
        matches = [similarity(s.edges, self.edges) for s in self.samples]
        floor = float(np.percentile(matches, 10))
        # A busy scene (crowds, traffic) matches its own reference less: scale the bounds to it.
        self.low, self.high = min(MATCH_LOW, 0.6 * floor), min(MATCH_HIGH, 0.85 * floor)
        self.typical = float(np.median(matches))
        self.brightness = float(np.median([s.brightness for s in self.samples]))
        self.sharpness = float(np.median([s.sharpness for s in self.samples]))
        self.samples = []

    def follow(self, s: SceneSample, weight: float) -> None:
        assert self.edges is not None
        self.edges += weight * (s.edges - self.edges)
        self.brightness += weight * (s.brightness - self.brightness)
        self.sharpness += weight * (s.sharpness - self.sharpness)


class TamperDetector:
    """One camera's tamper state. `observe` is called with the key of what scores now (the model
    and the picture class: infrared at night looks unlike the day, and is learned on its own) and
    a sample every `interval` seconds; it returns a Verdict when the state flips.

    The layout is judged against every reference learned, so a new key (the first grey night) is
    learned only from pictures that still show the known scene: a sprayed or turned camera that
    happens to turn grey is tampered, not learned.
    """

    def __init__(self, after: float = 4.0, learn: float = 10.0, adapt: float = 120.0,
                 interval: float = 0.25) -> None:
        self.after = after  # seconds a change (or the return) must last before it counts
        self.learn = learn
        self.weight = interval / adapt  # per sample: a time constant of `adapt` seconds
        self.tampered = False
        self._refs: dict[Hashable, _Reference] = {}
        self._run_since: float | None = None  # start of the current run of the opposite verdict

    def restart_runs(self) -> None:
        """The stream was lost: a change must be seen for `after` seconds of the new stream."""
        self._run_since = None

    def observe(self, key: Hashable, s: SceneSample, t: float) -> Verdict | None:
        ref = self._refs.setdefault(key, _Reference(t))
        learned = [r for r in self._refs.values() if r.learned]
        matches = [(similarity(s.edges, r.edges), r) for r in learned if r.edges is not None]
        best = max(matches, key=lambda m: m[0] - m[1].low, default=None)
        if not ref.learned:
            known = best is None or best[0] >= best[1].high  # the first reference, or the scene
            if not s.flat and known and not self.tampered:
                ref.samples.append(s)
                if t - ref.started >= self.learn and len(ref.samples) >= 8:
                    ref.finish()
            if best is None:
                return None  # nothing learned yet: nothing to judge against
        why, difference, normal = self._judge(s, ref if ref.learned else None, best)
        if normal and not self.tampered and ref.learned:
            ref.follow(s, self.weight)
        return self._hysteresis(t, why, difference, normal)

    def _judge(self, s: SceneSample, ref: _Reference | None,
               best: tuple[float, _Reference] | None) -> tuple[str | None, float, bool]:
        """(why it is changed or None, difference, whether it is plainly normal)."""
        if s.flat:
            return "the picture is blank (lens covered?)", 1.0, False
        assert best is not None
        match, by = best
        difference = 1.0 - min(1.0, max(0.0, match))
        normal = match >= by.high
        why = None
        if match < by.low:
            why = f"the scene changed (layout match {match:.2f}, normally {by.typical:.2f})"
        if ref is not None:  # brightness and focus need this key's own reference
            light = s.brightness / max(ref.brightness, 1e-3)
            sharp = s.sharpness / max(ref.sharpness, 1e-6)
            difference = max(difference, 1.0 - min(1.0, light), 1.0 - min(1.0, 1.0 / max(light, 1e-6)),
                             1.0 - min(1.0, sharp))
            normal = normal and BACK_FROM_DARK <= light <= BACK_FROM_BRIGHT and sharp >= BACK_FROM_BLUR
            if light < DARK:
                why = why or f"the picture is much darker ({light:.2f}x the learned brightness)"
            elif light > BRIGHT and s.brightness - ref.brightness > 0.3:
                why = why or f"the picture is much brighter ({light:.1f}x the learned brightness)"
            elif sharp < BLUR:
                why = why or f"the picture is blurred ({sharp:.2f}x the learned sharpness)"
        return why, round(difference, 3), normal and why is None

    def _hysteresis(self, t: float, why: str | None, difference: float,
                    normal: bool) -> Verdict | None:
        opposite = normal if self.tampered else why is not None
        if not opposite:
            self._run_since = None
            return None
        if self._run_since is None:
            self._run_since = t
        if t - self._run_since < self.after:
            return None
        self._run_since = None
        self.tampered = not self.tampered
        return Verdict(self.tampered, difference,
                       why if self.tampered else "the picture matches the scene again")
