"""Scenario kit: labelled clips of anomaly types the UCSD scenes lack, composited from real pixels.

A DEVELOPMENT AID, NOT A BENCHMARK OF RECORD. UCSD Ped1/Ped2 test anomalies are mostly cyclists,
skaters and carts; a fixed-camera detector should also notice a person standing where nobody
stands, loitering, lying or bending, a bag left behind, a thrown object, someone walking against the
flow, and it should stay quiet in a denser crowd, under camera shake and lighting drift. This kit
builds such clips from footage we have: walkers cut out of held-out frames, composited onto held-out
frames (with their own real walkers), with per-frame labels. The composites are approximations (no
cast shadows, simple poses, looped gaits): use them to find weaknesses and regressions, never to
report accuracy.

    python benchmarks/scenarios.py --out DIR [--scenes vtest,ped2,ped1] [--seed 0] \
        [--data ../shared/data] [--vtest PATH] [--types standing,crowd,...]

--types builds only those scenario types (default: all ten); their clips are the same as in a full
build with the same seed. Modules: scene (learning the scene), compose (sprites, poses, places,
rendering), plans (one plan per scenario type), build (writing the kit; the command line).

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
kit writes from them must stay outside the repository (an --out inside it is refused): never
commit or redistribute it.
"""

from __future__ import annotations

from __future__ import annotations

from .build import main

__all__ = ["main"]
